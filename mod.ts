/**
 * Zero-downtime upgrades for Deno and Bun services, wire-compatible with Go
 * tableroll.
 *
 * @module
 */
export * from "./src/errors.ts";
