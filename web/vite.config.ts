import { defineConfig } from "vite";

// The bundle goes inside the Python package: the server serves it, the wheel ships it.
export default defineConfig({
  base: "/",
  build: {
    outDir: "../src/llmledger/dashboard/static",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    chunkSizeWarningLimit: 400,
  },
});
