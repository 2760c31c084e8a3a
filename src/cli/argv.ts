/**
 * `--user-timeout -1s`: yargs reads a value that starts with a dash as more
 * flags (`-1 -s`) and reports "Unknown arguments: 1, s", which names neither
 * the flag nor the mistake. A dash and a digit after a flag that takes a
 * value is that flag's value (the CLI has no short flags made of digits), so
 * it is joined to it (`--user-timeout=-1s`) and the config check names the
 * flag and says what is wrong with the value.
 */
export function joinDashValues(argv: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const next = argv[i + 1];
    if (next !== undefined && /^-[\d.]/.test(next) && arg.startsWith("--") && !arg.includes("=") && valueFlags.has(arg.slice(2))) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}
