// Builds dist/esm and dist/cjs from src with tsc, so that the package loads from both
// `import` and `require` with its type declarations (see the exports map in package.json).
// `--esm` builds dist/esm alone, for the benchmarks (they run it, and `--quick` has a minute in all).
import { execFileSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'

const tsc = (...args) =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', ...args], {
    stdio: 'inherit',
  })

const esmOnly = process.argv.includes('--esm')
rmSync(esmOnly ? 'dist/esm' : 'dist', { recursive: true, force: true })
tsc('--outDir', 'dist/esm')
writeFileSync('dist/esm/package.json', '{ "type": "module" }\n')
if (!esmOnly) {
  tsc('--outDir', 'dist/cjs', '--module', 'commonjs', '--moduleResolution', 'node10')
  writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n')
}
