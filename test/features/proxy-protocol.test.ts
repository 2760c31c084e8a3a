import { describe, expect, it } from "vitest";
import { encodeProxyHeader, parseProxyHeader } from "../../src/proxy/admission/proxy-protocol.js";

const src4 = { address: "203.0.113.7", port: 51234 };
const dst4 = { address: "10.0.0.1", port: 6432 };
const src6 = { address: "2001:db8::7", port: 51234 };
const dst6 = { address: "::1", port: 6432 };

describe("PROXY protocol encoding", () => {
  it("writes v1 lines exactly as the spec shows them", () => {
    expect(encodeProxyHeader("v1", src4, dst4).toString()).toBe("PROXY TCP4 203.0.113.7 10.0.0.1 51234 6432\r\n");
    expect(encodeProxyHeader("v1", src6, dst6).toString()).toBe("PROXY TCP6 2001:db8::7 ::1 51234 6432\r\n");
    expect(encodeProxyHeader("v1", src4, dst6).toString()).toBe("PROXY UNKNOWN\r\n");
  });

  it("writes v2 headers byte for byte", () => {
    expect(encodeProxyHeader("v2", src4, dst4).toString("hex")).toBe(
      // signature, ver/cmd 0x21, TCP4 0x11, length 12, src, dst, sport, dport
      `0d0a0d0a000d0a515549540a` + "21" + "11" + "000c" + "cb007107" + "0a000001" + "c822" + "1920",
    );
    const v6 = encodeProxyHeader("v2", src6, dst6);
    expect(v6.length).toBe(16 + 36);
    expect(v6.subarray(12, 16).toString("hex")).toBe("21210024");
    expect(v6.subarray(16, 32).toString("hex")).toBe("20010db8000000000000000000000007");
    expect(v6.subarray(32, 48).toString("hex")).toBe("00000000000000000000000000000001");
  });

  it("parses what it writes, in both versions and families", () => {
    for (const version of ["v1", "v2"] as const) {
      for (const [s, d] of [[src4, dst4], [src6, dst6]] as const) {
        const header = encodeProxyHeader(version, s, d);
        const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from("payload")]), "any");
        expect(parsed).toMatchObject({ status: "ok", length: header.length, header: { version } });
        if (parsed.status !== "ok") continue;
        expect(parsed.header.source?.port).toBe(s.port);
        expect(parsed.header.destination?.port).toBe(d.port);
      }
    }
  });

  it("waits for more bytes on a partial header", () => {
    const v2 = encodeProxyHeader("v2", src4, dst4);
    expect(parseProxyHeader(v2.subarray(0, 5), "any")).toEqual({ status: "incomplete" });
    expect(parseProxyHeader(v2.subarray(0, 20), "v2")).toEqual({ status: "incomplete" });
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2"), "v1")).toEqual({ status: "incomplete" });
  });

  it("rejects malformed and unexpected headers", () => {
    expect(parseProxyHeader(Buffer.from("GET / HTTP/1.1\r\n"), "any").status).toBe("invalid");
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), "v1").status).toBe("invalid");
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), "v1").status).toBe("invalid");
    expect(parseProxyHeader(Buffer.from(`PROXY ${"x".repeat(120)}`), "v1").status).toBe("invalid");
    expect(parseProxyHeader(encodeProxyHeader("v1", src4, dst4), "v2").status).toBe("invalid");
    const wrongVersion = encodeProxyHeader("v2", src4, dst4);
    wrongVersion[12] = 0x31;
    expect(parseProxyHeader(wrongVersion, "v2").status).toBe("invalid");
  });
});
