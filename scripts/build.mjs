// Builds dist/esm and dist/cjs from src with tsc, so that the package loads from both
// `import` and `require` with its type declarations (see the exports map in package.json).
import { execFileSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'

const tsc = (...args) =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', ...args], {
    stdio: 'inherit',
  })

rmSync('dist', { recursive: true, force: true })
tsc('--outDir', 'dist/esm')
tsc('--outDir', 'dist/cjs', '--module', 'commonjs', '--moduleResolution', 'node10')
writeFileSync('dist/esm/package.json', '{ "type": "module" }\n')
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n')
