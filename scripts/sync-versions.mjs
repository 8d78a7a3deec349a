// `node scripts/sync-versions.mjs`: give every platform package (npm/*/package.json) and the
// Rust workspace (Cargo.toml) the version in package.json. npm runs it on `npm version <x>`.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { platforms, root, rootPackage } from './pack.mjs'

const { version } = rootPackage()
const changed = []

for (const platform of platforms()) {
  const file = path.join(root, 'npm', platform, 'package.json')
  const pkg = JSON.parse(readFileSync(file, 'utf8'))
  if (pkg.version === version) continue
  pkg.version = version
  writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`)
  changed.push(path.relative(root, file))
}

const cargo = path.join(root, 'Cargo.toml')
const text = readFileSync(cargo, 'utf8')
const synced = text.replace(/(\[workspace\.package\][^[]*?\nversion = )"[^"]*"/, `$1"${version}"`)
if (synced === text && !text.includes(`version = "${version}"`))
  throw new Error('Cargo.toml: no [workspace.package] version to update')
if (synced !== text) {
  writeFileSync(cargo, synced)
  changed.push('Cargo.toml')
}

console.log(
  changed.length ? `version ${version}: updated ${changed.join(', ')}` : `version ${version}: already in sync`,
)
