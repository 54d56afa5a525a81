// Renders the demo's HTML report in headless Chromium and saves a PNG for the README.
// Usage: npm start && node scripts/screenshot-report.mjs [reports/demo-report.html] [docs/img/demo-report.png]
import { chromium } from "playwright-core"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"

const input = resolve(process.argv[2] ?? "reports/demo-report.html")
const output = resolve(process.argv[3] ?? "docs/img/demo-report.png")
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"]
})
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 })
  await page.goto(pathToFileURL(input).href)
  await page.screenshot({ path: output, fullPage: true })
  console.log(`wrote ${output}`)
} finally {
  await browser.close()
}
