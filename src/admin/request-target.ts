// The admin server's reading of an HTTP request-target, without `new URL()`:
// a target such as `//x:99999/` is a valid origin-form path to the HTTP
// parser but an invalid scheme-relative URL to WHATWG URL, which throws.

/** A request-target split into what the routes read. */
export interface RequestTarget {
  /** The path exactly as sent, before any `?`. Routes match it literally. */
  readonly pathname: string;
  readonly query: URLSearchParams;
}

/**
 * Splits a request-target into path and query: the origin-form
 * (`/path?query`, RFC 9112 §3.2.1) by hand, the absolute-form
 * (`http://host/path`, which RFC 9112 §3.2.2 says a server must accept) with
 * WHATWG URL, behind a catch. Anything else (`*`, an absolute-form URL does
 * not parse) gives a message for a 400 answer. Never throws: URLSearchParams
 * decodes malformed percent-escapes leniently.
 */
export function parseRequestTarget(target: string | undefined): RequestTarget | string {
  if (target !== undefined && /^https?:\/\//i.test(target)) return parseAbsolute(target);
  if (target === undefined || !target.startsWith("/")) {
    return `the request-target must be a path starting with /, such as /metrics; got ${JSON.stringify(target ?? "")}`;
  }
  // A valid path to RFC 9112, but URL parsers read `//host:port/` as an
  // authority, and no endpoint has an empty first segment: refused rather
  // than answered 404, so that no reading of it can be mistaken for another.
  if (target.startsWith("//")) return `the request-target must not start with //; got ${JSON.stringify(target)}`;
  const question = target.indexOf("?");
  if (question === -1) return { pathname: target, query: new URLSearchParams() };
  return { pathname: target.slice(0, question), query: new URLSearchParams(target.slice(question + 1)) };
}

function parseAbsolute(target: string): RequestTarget | string {
  try {
    const url = new URL(target);
    return { pathname: url.pathname, query: url.searchParams };
  } catch {
    return `the request-target ${JSON.stringify(target)} is not a URL; send a path such as /metrics`;
  }
}
