/**
 * Which prebuilt platform package this process needs. orchard-ts publishes one npm package
 * per target, `orchard-ts-<platform>`, holding the native addon and the pie-emulator engine;
 * npm installs the one matching `os`, `cpu` and `libc` as an optional dependency.
 */

import { readFileSync } from 'node:fs'
import path from 'node:path'

/** The targets orchard-ts is prebuilt for (the `npm/<platform>` packages). */
export const PREBUILT_PLATFORMS = ['darwin-arm64', 'linux-x64-gnu', 'linux-arm64-gnu'] as const

/** Where PIE itself runs; everywhere else only pie-emulator does. */
export const PIE_PLATFORMS: readonly string[] = ['darwin-arm64']

/** The package root (holds `package.json`, `model-specs/` and, in a source checkout, the built addon). */
export const packageRoot = path.resolve(__dirname, '..')

let glibc: boolean | undefined

function isGlibc(): boolean {
  if (glibc === undefined) {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
    glibc = typeof header?.glibcVersionRuntime === 'string'
  }
  return glibc
}

/** This process's platform as the packages name it: `darwin-arm64`, `linux-x64-gnu`, `linux-x64-musl`, `win32-x64`, ... */
export function currentPlatform(): string {
  const base = `${process.platform}-${process.arch}`
  if (process.platform !== 'linux') return base
  return `${base}-${isGlibc() ? 'gnu' : 'musl'}`
}

/** The npm package that carries the binaries for `platform`. */
export function platformPackageName(platform: string = currentPlatform()): string {
  return `orchard-ts-${platform}`
}

export function isPrebuilt(platform: string = currentPlatform()): boolean {
  return (PREBUILT_PLATFORMS as readonly string[]).includes(platform)
}

let version: string | undefined

/** orchard-ts's own version (the platform package must have the same). */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version
  return version
}
