import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/image builds and runs the container image: `npm run test:image`.
    exclude: [...configDefaults.exclude, "test/image/**"],
    // Real sockets and namespaces: give slow CI machines room, but fail rather than hang.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Child processes and namespaces, not threads: each file in its own process.
    pool: "forks",
  },
});
