/** Loads the napi addon (the generated `index.js` beside `package.json`). Internal. */

import path from 'node:path'

import { NativeLoadError } from './errors'

import type * as Binding from '../index'

export type NativeBinding = typeof Binding

function load(): NativeBinding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const binding = require('../index.js') as NativeBinding
    binding.installExitHook()
    return binding
  } catch (e) {
    throw new NativeLoadError(
      'NATIVE_LOAD',
      `orchard-ts could not load its native addon for ${process.platform}-${process.arch}. ` +
        'Run `npm run build` in a source checkout, or reinstall the package so npm fetches the ' +
        'prebuilt binary for your platform (delete package-lock.json if it was made on another OS).',
      { cause: e },
    )
  }
}

export const binding: NativeBinding = load()

/** The model-specs folder shipped with the package (override: ORCHARD_MODEL_SPECS). */
export function modelSpecsDir(): string {
  return process.env.ORCHARD_MODEL_SPECS || path.resolve(__dirname, '..', 'model-specs')
}
