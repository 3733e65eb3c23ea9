// Renders Markdown (stdin) the way GitHub does (CommonMark with the GFM
// extensions, through micromark) and parses every `mermaid` code block the
// renderer produced with Mermaid's own parser. Prints one JSON object:
//   { "html": "...", "mermaid": [{ "ok": true, "type": "xychart" } | { "ok": false, "error": "..." }] }
// Mermaid needs a DOM to load, so it gets jsdom's.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';
import { micromark } from 'micromark';
import { gfm, gfmHtml } from 'micromark-extension-gfm';

const markdown = readFileSync(0, 'utf8');
// GitHub renders raw HTML such as <details> (and sanitises it after), so
// dangerous HTML is allowed here to see what an injection would produce.
const html = micromark(markdown, {
  allowDangerousHtml: true,
  extensions: [gfm()],
  htmlExtensions: [gfmHtml()],
});

const { window } = new JSDOM(html);
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');

const blocks = [...window.document.querySelectorAll('pre > code.language-mermaid')];
const results = [];
for (const block of blocks) {
  try {
    const parsed = await mermaid.parse(block.textContent);
    results.push({ ok: true, type: parsed.diagramType });
  } catch (e) {
    results.push({ ok: false, error: String(e && e.message ? e.message : e).split('\n').slice(0, 3).join(' ') });
  }
}
process.stdout.write(JSON.stringify({ html, mermaid: results }));
