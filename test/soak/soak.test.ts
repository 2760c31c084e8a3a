// The fault-injection soak (issue 10), 30 seconds in the default suite;
// `npm run soak` runs the same for minutes (SOAK_SECONDS). See harness.ts for
// what runs and what is checked.

import { describe, test } from "vitest";
import { Lab, netnsSupport } from "../helpers/netns.js";
import { runSoak } from "./harness.js";

const support = netnsSupport();
if (!support.ok) console.warn(`skipping the soak: ${support.reason}`);

/** Seconds of traffic: 30 in the suite, SOAK_SECONDS for `npm run soak`. */
const SECONDS = Number(process.env.SOAK_SECONDS ?? 30);
/** Sessions in flight at once; SOAK_CONCURRENCY overrides. */
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 32);
/** Set-up, the last sessions' deadline, the drain and the stop, on a loaded machine. */
const OVERHEAD_MS = 150_000;

describe.skipIf(!support.ok)("fault-injection soak", () => {
  test(
    `${SECONDS} s of mixed traffic, faults and SIGHUPs leave every listener's books balanced, no descriptor or session behind, every clean transfer intact`,
    { timeout: SECONDS * 1000 + OVERHEAD_MS },
    async ({ expect, onTestFinished }) => {
      if (!(Number.isFinite(SECONDS) && SECONDS > 0)) throw new Error(`SOAK_SECONDS must be a positive number, got ${process.env.SOAK_SECONDS}`);
      const lab = new Lab();
      onTestFinished(() => lab.destroy());
      const { summary, checks } = await runSoak(lab, { seconds: SECONDS, concurrency: CONCURRENCY, log: (line) => console.log(line) });
      console.log(`SOAK_SUMMARY ${JSON.stringify(summary)}`);
      for (const c of checks) console.log(`soak check ${c.ok ? "ok  " : "FAIL"} ${c.name}${c.ok ? "" : `\n    ${c.detail.replaceAll("\n", "\n    ")}`}`);
      expect(checks.filter((c) => !c.ok)).toEqual([]);
    },
  );
});
