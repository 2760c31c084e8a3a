import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import base from "../../vitest.config.js";

// The image test only: `npm run test:image`. The default config excludes
// test/image because building an image takes a minute and needs podman.
// Spread, not mergeConfig: mergeConfig concatenates include/exclude lists.
export default defineConfig({
  ...base,
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    ...base.test,
    include: ["test/image/**/*.test.ts"],
    exclude: ["**/node_modules/**"],
    // One image, containers on the host network: one test at a time.
    fileParallelism: false,
  },
});
