// `node scripts/pack-local.mjs <outDir>`: from a built tree (`npm run build`), write
// orchard-ts-<version>.tgz and this platform's orchard-ts-<platform>-<version>.tgz into
// <outDir>, ready for `npm install <outDir>/*.tgz`.
import { createRequire } from 'node:module'
import path from 'node:path'

import { EMULATOR_BINARY, packMain, packPlatform, root } from './pack.mjs'

const outDir = process.argv[2]
if (!outDir || process.argv.length > 3) {
  console.error('usage: node scripts/pack-local.mjs <outDir>')
  process.exit(2)
}
const { currentPlatform } = createRequire(import.meta.url)(path.join(root, 'dist', 'platform.js'))
const platform = currentPlatform()
console.log(packMain(outDir))
console.log(
  packPlatform(
    platform,
    {
      addon: path.join(root, `orchard.${platform}.node`),
      emulator: path.join(root, 'target', 'release', EMULATOR_BINARY),
    },
    outDir,
  ),
)
