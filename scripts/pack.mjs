// Builds the npm tarballs from a built tree (the release workflow and pack-local use it):
//
//   node scripts/pack.mjs main <outDir>
//       orchard-ts-<version>.tgz: dist/, model-specs/, the binding's types; its
//       optionalDependencies name every platform package of npm/ at the same version.
//   node scripts/pack.mjs platform <platform> <artifactDir> <outDir>
//       orchard-ts-<platform>-<version>.tgz from <artifactDir>/orchard.<platform>.node and
//       <artifactDir>/proxy_inference_engine.
//
// Each package is staged in a temporary directory, so the repository's package.json is never
// edited. Prints the tarball's path.
import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const EMULATOR_BINARY = 'proxy_inference_engine'

const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'))
export const rootPackage = () => readJson(path.join(root, 'package.json'))

/** The platform packages: one folder of npm/ each (`darwin-arm64`, `linux-x64-gnu`, ...). */
export function platforms() {
  return readdirSync(path.join(root, 'npm'), { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(path.join(root, 'npm', e.name, 'package.json')))
    .map((e) => e.name)
    .sort()
}

function fail(message) {
  console.error(`pack: ${message}`)
  process.exit(1)
}

function npmPack(stage, outDir) {
  mkdirSync(outDir, { recursive: true })
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', path.resolve(outDir)], {
    cwd: stage,
    encoding: 'utf8',
  })
  const [{ filename }] = JSON.parse(out)
  rmSync(stage, { recursive: true, force: true })
  return path.join(path.resolve(outDir), filename)
}

export function packMain(outDir) {
  const pkg = rootPackage()
  for (const built of ['dist/index.js', 'dist/index.mjs', 'dist/testing.mjs']) {
    if (!existsSync(path.join(root, built))) fail(`${built} is missing; run \`npm run build\` first`)
  }
  const stage = mkdtempSync(path.join(os.tmpdir(), 'orchard-pack-'))
  for (const entry of [...pkg.files, 'README.md'])
    cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true })
  const published = { ...pkg }
  for (const devOnly of ['devDependencies', 'scripts', 'overrides']) delete published[devOnly]
  published.optionalDependencies = Object.fromEntries(platforms().map((p) => [`${pkg.name}-${p}`, pkg.version]))
  writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`)
  return npmPack(stage, outDir)
}

export function packPlatform(platform, { addon, emulator }, outDir) {
  const manifest = path.join(root, 'npm', platform, 'package.json')
  if (!existsSync(manifest)) fail(`no platform package npm/${platform} (have: ${platforms().join(', ')})`)
  const pkg = readJson(manifest)
  const version = rootPackage().version
  if (pkg.version !== version)
    fail(`npm/${platform} is at ${pkg.version}, orchard-ts at ${version}; run \`node scripts/sync-versions.mjs\``)
  for (const file of [addon, emulator]) if (!existsSync(file)) fail(`${file} is missing`)
  const stage = mkdtempSync(path.join(os.tmpdir(), 'orchard-pack-'))
  cpSync(path.join(root, 'npm', platform), stage, { recursive: true })
  cpSync(path.join(root, 'LICENSE'), path.join(stage, 'LICENSE'))
  cpSync(addon, path.join(stage, pkg.main))
  cpSync(emulator, path.join(stage, EMULATOR_BINARY))
  // Artifact stores drop file modes; the emulator must stay executable.
  chmodSync(path.join(stage, EMULATOR_BINARY), 0o755)
  return npmPack(stage, outDir)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [kind, ...args] = process.argv.slice(2)
  if (kind === 'main' && args.length === 1) {
    console.log(packMain(args[0]))
  } else if (kind === 'platform' && args.length === 3) {
    const [platform, artifacts, outDir] = args
    const files = {
      addon: path.join(artifacts, `orchard.${platform}.node`),
      emulator: path.join(artifacts, EMULATOR_BINARY),
    }
    console.log(packPlatform(platform, files, outDir))
  } else {
    fail('usage: node scripts/pack.mjs main <outDir> | platform <platform> <artifactDir> <outDir>')
  }
}
