import { describe, expect, it } from "vitest";
import { reasonForSocketError, sideOf, ALL_CLOSE_REASONS } from "../../src/proxy/close-reason.js";
import { formatDuration, parseDuration } from "../../src/util/duration.js";
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
