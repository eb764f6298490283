// Builds the console into the Python package's static files (served by enkaku server
// under /console/). Pages are plain HTML entries with module scripts: no inline script,
// so the server's Content-Security-Policy can forbid it.
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

const root = resolve(import.meta.dirname, "pages");

export default defineConfig({
  root,
  base: "/console/",
  publicDir: false,
  build: {
    outDir: resolve(import.meta.dirname, "../src/enkaku/server/console_static"),
    emptyOutDir: true,
    target: "es2022",
    // noVNC's decoders are large; a warning about chunk size helps nobody here.
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      input: {
        login: resolve(root, "login.html"),
        home: resolve(root, "index.html"),
        session: resolve(root, "session.html"),
      },
    },
  },
  test: {
    root: import.meta.dirname,
    include: ["test/**/*.test.ts"],
  },
});
