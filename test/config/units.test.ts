import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { joinDashValues } from "../../src/cli/argv.js";
import { type HandledSignal, type SignalActions, SignalRelay } from "../../src/cli/signals.js";
import { reasonForSocketError, sideOf, ALL_CLOSE_REASONS } from "../../src/proxy/session/close-reason.js";
import { describeDuration, formatDuration, MAX_TIMER_MS, parseDuration } from "../../src/util/duration.js";
import { parseHostPort } from "../../src/util/host-port.js";

describe("durations", () => {
  it.each([
    ["500ms", 500],
    ["2s", 2000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["90", 90_000],
    [2, 2000],
  ] as const)("parses %s", (input, ms) => expect(parseDuration(input)).toBe(ms));
  it.each(["", "5 minutes", "-1s", "1x", "s"])("rejects %j", (input) => expect(parseDuration(input)).toBeUndefined());
  it("formats in the largest exact unit", () => {
    expect([90_000, 60_000, 1500, 0].map(formatDuration)).toEqual(["90s", "1m", "1500ms", "0s"]);
  });
  it("reads back what it formats, up to the longest a timer holds", () => {
    for (const ms of [1, 999, 1001, 86_400_000, 30_000_000, MAX_TIMER_MS]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
  it("describes the timer bound without promising more than it is", () => {
    expect(describeDuration(MAX_TIMER_MS)).toBe("24.8 days");
  });
});

describe("host:port", () => {
  it("parses IPv4, names, IPv6 in brackets and a bare port", () => {
    expect(parseHostPort("10.0.0.1:5432")).toEqual({ host: "10.0.0.1", port: 5432 });
    expect(parseHostPort("db.internal:5432")).toEqual({ host: "db.internal", port: 5432 });
    expect(parseHostPort("[::1]:5432")).toEqual({ host: "::1", port: 5432 });
    expect(parseHostPort(":7000")).toEqual({ host: "0.0.0.0", port: 7000 });
  });
  it("explains what is wrong", () => {
    expect(parseHostPort("db")).toMatch(/no port/);
    expect(parseHostPort("::1:5432")).toMatch(/brackets/);
    expect(parseHostPort("db:99999")).toMatch(/out of range/);
    expect(parseHostPort("db:0", { allowPortZero: false })).toMatch(/out of range/);
  });
  it("says what to write for a bare port, for a listener and for an upstream", () => {
    expect(parseHostPort("8080")).toMatch(/bare port, not HOST:PORT; write 0\.0\.0\.0:8080/);
    expect(parseHostPort("5432", { allowPortZero: false })).toMatch(/bare port, not HOST:PORT; write the upstream's host too, e\.g\. 127\.0\.0\.1:5432/);
  });
  it.each(["[]:0", "[]:", "[db]:1", "[::1]x:1", "a b:1", "db/x:1", "http://db:1", ":", "", "db:", "db:1x"])("refuses the malformed address %j", (input) => {
    expect(typeof parseHostPort(input)).toBe("string");
  });
  it("takes :PORT as every interface where it listens, but not as an upstream", () => {
    expect(parseHostPort(":7000")).toEqual({ host: "0.0.0.0", port: 7000 });
    expect(parseHostPort(":5432", { allowPortZero: false })).toMatch(/has no host/);
  });
});

describe("close reasons", () => {
  it("maps errnos to a side and a cause", () => {
    expect(reasonForSocketError("upstream", "ETIMEDOUT")).toBe("upstream_timeout");
    expect(reasonForSocketError("client", "ETIMEDOUT")).toBe("client_timeout");
    expect(reasonForSocketError("client", "EPIPE")).toBe("client_reset");
    expect(reasonForSocketError("upstream", "EHOSTUNREACH")).toBe("upstream_unreachable");
    expect(reasonForSocketError("upstream", "EIO")).toBe("upstream_error");
    expect(reasonForSocketError("client", undefined)).toBe("client_error");
  });
  it("are all <side>_<cause> in snake_case", () => {
    for (const reason of ALL_CLOSE_REASONS) {
      expect(reason).toMatch(/^(client|upstream|proxy)_[a-z_]+$/);
      expect(["client", "upstream", "proxy"]).toContain(sideOf(reason));
    }
  });
});

describe("command-line values that start with a dash", () => {
  it("joins them to the flag that takes a value, and leaves everything else alone", () => {
    const flags = new Set(["user-timeout", "listen"]);
    expect(joinDashValues(["--user-timeout", "-1s", "--listen", "-5", "--keepalive", "-1"], flags)).toEqual(["--user-timeout=-1s", "--listen=-5", "--keepalive", "-1"]);
    expect(joinDashValues(["--listen", "--user-timeout", "5s", "-h"], flags)).toEqual(["--listen", "--user-timeout", "5s", "-h"]);
  });
});

describe("the signal relay", () => {
  function recorder(): { actions: SignalActions; calls: string[] } {
    const calls: string[] = [];
    return {
      calls,
      actions: {
        stop: (signal, during) => calls.push(`stop ${signal} ${during}`),
        reload: (during) => calls.push(`reload ${during}`),
        ignore: (signal, during) => calls.push(`ignore ${signal} ${during}`),
        failed: (signal, error) => calls.push(`failed ${signal} ${(error as Error).message}`),
      },
    };
  }
  const emit = (source: EventEmitter, signal: HandledSignal): boolean => source.emit(signal, signal);

  it("queues signals until attached, then replays them: one reload for many SIGHUPs", () => {
    const source = new EventEmitter();
    const relay = SignalRelay.install(source, () => {
      throw new Error("not impatient");
    });
    for (const signal of ["SIGHUP", "SIGUSR2", "SIGHUP", "SIGUSR1"] as const) emit(source, signal);
    const { actions, calls } = recorder();
    relay.attach(actions);
    expect(calls).toEqual(["ignore SIGUSR2 true", "ignore SIGUSR1 true", "reload true"]);
    emit(source, "SIGHUP");
    expect(calls.at(-1)).toBe("reload false");
  });

  it("replays a stop instead of a reload, and a second stop while queued is impatience", () => {
    const source = new EventEmitter();
    const impatient: string[] = [];
    const relay = SignalRelay.install(source, (signal) => impatient.push(signal));
    emit(source, "SIGHUP");
    emit(source, "SIGTERM");
    emit(source, "SIGINT");
    expect(impatient).toEqual(["SIGINT"]);
    const { actions, calls } = recorder();
    relay.attach(actions);
    expect(calls).toEqual(["stop SIGTERM true"]);
  });

  it("catches what an action throws and reports it; the next signal is still handled", () => {
    const source = new EventEmitter();
    const relay = SignalRelay.install(source, () => {});
    const { actions, calls } = recorder();
    relay.attach({
      ...actions,
      reload: () => {
        throw new Error("boom");
      },
    });
    expect(() => emit(source, "SIGHUP")).not.toThrow();
    emit(source, "SIGUSR2");
    expect(calls).toEqual(["failed SIGHUP boom", "ignore SIGUSR2 false"]);
  });
});
