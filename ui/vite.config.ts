/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the app with hot reload and passes what is the server's to a `bifrost serve` on :8000.
const server = "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: {
    target: "es2022",
    // The control plane serves `assets/` with a year-long cache: every file there is named by its content.
    assetsDir: "assets",
    reportCompressedSize: true,
  },
  server: {
    proxy: { "/api": server, "/login": server, "/logout": server, "/docs": server, "/openapi.json": server },
  },
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
