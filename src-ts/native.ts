/**
 * Loads the native addon on first use, never at import: `import 'orchard-ts'` works on any
 * platform, and the first call that needs the addon either gets it or one short
 * {@link NativeLoadError} saying what is missing and the command that fixes it. Internal.
 */

import { existsSync } from 'node:fs'
import path from 'node:path'

import type * as Binding from '../index'
import { NativeLoadError } from './errors'
import {
  currentPlatform,
  isPrebuilt,
  PREBUILT_PLATFORMS,
  packageRoot,
  packageVersion,
  platformPackageName,
} from './platform'
import type { ReasoningEffort } from './types'

export type NativeBinding = typeof Binding

const BUILD_FROM_SOURCE =
  'build it from source: clone the orchard-ts repository and run `npm ci && npm run build` (needs Rust and cmake)'

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e)
  return text.split('\n', 1)[0] ?? text
}

/** A source checkout's build (`npm run build:native`), else the platform package. */
function requireAddon(platform: string): NativeBinding {
  const local = path.join(packageRoot, `orchard.${platform}.node`)
  if (existsSync(local)) return require(local) as NativeBinding
  const pkg = platformPackageName(platform)
  let found: string
  try {
    found = (require(`${pkg}/package.json`) as { version: string }).version
  } catch {
    if (!isPrebuilt(platform)) {
      throw new NativeLoadError(
        `orchard-ts has no prebuilt native addon for ${platform} (prebuilt: ${PREBUILT_PLATFORMS.join(', ')}).\n` +
          `Fix: ${BUILD_FROM_SOURCE}.`,
      )
    }
    throw new NativeLoadError(
      `orchard-ts cannot find its native addon for ${platform}: the package ${pkg} is not installed ` +
        `(npm installs it as an optional dependency; it is skipped with --omit=optional or a lockfile made on another platform).\n` +
        `Fix: npm install ${pkg}@${packageVersion()}`,
    )
  }
  if (found !== packageVersion()) {
    throw new NativeLoadError(
      `orchard-ts ${packageVersion()} found ${pkg} ${found}; the two must have the same version.\n` +
        `Fix: npm install ${pkg}@${packageVersion()}`,
    )
  }
  return require(pkg) as NativeBinding
}

function load(): NativeBinding {
  const platform = currentPlatform()
  let binding: NativeBinding
  try {
    binding = requireAddon(platform)
  } catch (e) {
    if (e instanceof NativeLoadError) throw e
    // The file is there but the OS refused it (an older glibc, a damaged download, ...).
    throw new NativeLoadError(
      `orchard-ts could not load its native addon for ${platform}: ${firstLine(e)}\n` +
        `Fix: reinstall orchard-ts (npm install ${platformPackageName(platform)}@${packageVersion()}), or ${BUILD_FROM_SOURCE}.`,
      process.env.ORCHARD_DEBUG ? { cause: e } : undefined,
    )
  }
  binding.installExitHook()
  return binding
}

let loaded: NativeBinding | undefined

/** The native addon, loaded on the first call. */
export function addon(): NativeBinding {
  loaded ??= load()
  return loaded
}

const shippedModelSpecs = path.join(packageRoot, 'model-specs')

/** The model-specs folder shipped with the package (override: ORCHARD_MODEL_SPECS). */
export function modelSpecsDir(): string {
  return process.env.ORCHARD_MODEL_SPECS || shippedModelSpecs
}

/**
 * What TypeScript reads of the core's option table. The JSON also carries `ranges` (the numeric
 * rows); TypeScript never restates them: numeric fields are checked natively
 * (`checkResponsesOption`, chat validation).
 */
export interface OptionLimits {
  reasoningEfforts: ReasoningEffort[]
  defaultReasoningEffort: ReasoningEffort
}

let limits: OptionLimits | undefined

/** The option ranges and reasoning efforts, defined once in the native core. */
export function optionLimits(): OptionLimits {
  limits ??= JSON.parse(addon().chatOptionLimits()) as OptionLimits
  return limits
}

/** The reasoning efforts the core accepts, lowest first. */
export function reasoningEfforts(): readonly ReasoningEffort[] {
  return optionLimits().reasoningEfforts
}

/** The tasks' fixed names and input limits (one row per task in the core). */
export interface TaskLimits {
  /** The model id the reference clients use for the privacy filter. */
  privacyFilterModel: string
  /** The prefill task name of the privacy filter. */
  privacyFilterTask: string
  /** The largest text, in UTF-8 bytes, the privacy filter takes. */
  privacyFilterMaxInputBytes: number
}

let tasks: TaskLimits | undefined

/** The tasks' names and input limits, defined once in the native core (`tasks/prefill.rs`). */
export function taskLimits(): TaskLimits {
  tasks ??= JSON.parse(addon().taskLimits()) as TaskLimits
  return tasks
}

/** The engine binary's file name (PIE and pie-emulator alike), defined in the native core. */
export function engineBinaryName(): string {
  return addon().engineBinaryName()
}

/** The engine binary of the install in `home` (`ORCHARD_HOME`, then `~/.orchard`), whether or not it exists. */
export function installedEngineBinary(home?: string): string {
  return addon().installedBinary(home)
}
