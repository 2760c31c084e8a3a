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
 * Splits an origin-form request-target (`/path?query`, RFC 9112 §3.2.1) into
 * path and query. Any other form (absolute-form, `*`, an empty target) gives
 * a message for a 400 answer: the admin server is not a forward proxy. Never
 * throws: URLSearchParams decodes malformed percent-escapes leniently.
 */
export function parseRequestTarget(target: string | undefined): RequestTarget | string {
  if (target === undefined || !target.startsWith("/")) {
    return `the request-target must be a path starting with /, such as /metrics; got ${JSON.stringify(target ?? "")}`;
  }
  const question = target.indexOf("?");
  if (question === -1) return { pathname: target, query: new URLSearchParams() };
  return { pathname: target.slice(0, question), query: new URLSearchParams(target.slice(question + 1)) };
}
