"""The OpenAPI document and the /docs page that renders it, offline.

FastAPI's default /docs and /redoc load Swagger UI / ReDoc from a CDN, and no package that ships those assets
is installed here, so /docs is this module's own page: one HTML document whose inline script (allowed by its
SHA-256 in the Content-Security-Policy, nothing else may load) fetches /openapi.json from the same server and
renders every operation with its parameters, responses and schemas, and a form to try it with a key.

    python -m hitcraft_assets.app.openapi            # writes docs/openapi.json (the committed copy)
    python -m hitcraft_assets.app.openapi --check    # exits 1 when docs/openapi.json differs from the app's
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

_SCRIPT = r"""
"use strict";
const $ = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") el.className = v; else el.setAttribute(k, v); }
  for (const kid of kids) if (kid != null) el.append(kid instanceof Node ? kid : String(kid));
  return el;
};
const typeOf = (s, doc) => {
  if (!s) return "";
  if (s.$ref) return s.$ref.split("/").pop();
  if (s.anyOf) return s.anyOf.map(x => typeOf(x, doc)).join(" | ");
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.type === "array") return typeOf(s.items, doc) + "[]";
  return (s.type || "any") + (s.format ? " (" + s.format + ")" : "");
};
function operation(path, method, op, doc) {
  const params = op.parameters || [];
  const form = $("form", {class: "try"});
  for (const p of params) {
    form.append($("label", {}, p.name + (p.required ? " *" : ""), " ",
      $("input", {name: p.name, "data-in": p.in, placeholder: typeOf(p.schema, doc)})));
  }
  const out = $("pre", {class: "out"});
  const send = $("button", {type: "submit"}, "Send");
  form.append(send, out);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    let url = path; const q = new URLSearchParams();
    for (const input of form.querySelectorAll("input")) {
      if (!input.value) continue;
      if (input.dataset.in === "path") url = url.replace("{" + input.name + "}", encodeURIComponent(input.value));
      else q.append(input.name, input.value);
    }
    const key = document.getElementById("key").value.trim();
    const headers = key ? {Authorization: "Bearer " + key} : {};
    out.textContent = "…";
    try {
      const r = await fetch(url + (q.toString() ? "?" + q : ""), {method: method.toUpperCase(), headers});
      const text = await r.text();
      let body = text; try { body = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {}
      out.textContent = r.status + " " + r.statusText + "\n\n" + body;
    } catch (e) { out.textContent = String(e); }
  });
  const table = $("table", {}, $("tr", {}, $("th", {}, "parameter"), $("th", {}, "in"), $("th", {}, "type"),
                                   $("th", {}, "description")));
  for (const p of params) {
    table.append($("tr", {}, $("td", {}, $("code", {}, p.name), p.required ? " *" : ""), $("td", {}, p.in),
                   $("td", {}, typeOf(p.schema, doc)),
                   $("td", {}, p.description || (p.schema || {}).description || "")));
  }
  const responses = $("ul");
  for (const [status, r] of Object.entries(op.responses || {})) {
    const schema = ((r.content || {})["application/json"] || {}).schema;
    responses.append($("li", {}, $("code", {}, status), " ", r.description || "",
                     schema ? " → " + typeOf(schema, doc) : ""));
  }
  const secured = (op.security || []).length > 0;
  return $("details", {class: "op", id: (op.operationId || method + path)},
    $("summary", {}, $("span", {class: "method " + method}, method.toUpperCase()), " ", $("code", {}, path), " ",
      op.summary || "", secured ? " (API key)" : ""),
    $("p", {class: "desc"}, op.description || ""),
    params.length ? table : $("p", {}, "No parameters."),
    $("h4", {}, "Responses"), responses, $("h4", {}, "Try it"), form);
}
async function main() {
  const root = document.getElementById("root");
  let doc;
  try { doc = await (await fetch("/openapi.json")).json(); }
  catch (e) { root.textContent = "Could not load /openapi.json: " + e; return; }
  document.title = doc.info.title + " — docs";
  root.append($("h1", {}, doc.info.title, " ", $("small", {}, doc.info.version)),
              $("p", {class: "desc"}, doc.info.description || ""));
  const tags = {};
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      (tags[tag] = tags[tag] || []).push(operation(path, method, op, doc));
    }
  }
  for (const [tag, ops] of Object.entries(tags)) root.append($("h2", {}, tag), ...ops);
  root.append($("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    root.append($("details", {class: "schema", id: "schema-" + name}, $("summary", {}, $("code", {}, name)),
                  $("pre", {}, JSON.stringify(schema, null, 2))));
  }
}
main();
"""

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 64rem; padding: 1rem 1.5rem; color: #1d2330; }
header { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #dde1e8; }
h1 small { color: #6b7385; font-size: .55em; } code, pre { font: 13px ui-monospace, monospace; }
.desc { white-space: pre-wrap; color: #394152; } details { border: 1px solid #dde1e8; border-radius: 6px;
margin: .4rem 0; padding: .3rem .6rem; } summary { cursor: pointer; }
table { border-collapse: collapse; margin: .4rem 0; }
td, th { border-bottom: 1px solid #eef0f4; padding: .2rem .5rem; text-align: left; vertical-align: top; }
.method { display: inline-block; min-width: 3.5rem; font-weight: 600; }
.get { color: #0b6bcb; } .post { color: #1b873f; }
.try label { display: inline-block; margin: .2rem .8rem .2rem 0; } .out { background: #f5f6f8; padding: .5rem;
max-height: 24rem; overflow: auto; white-space: pre-wrap; } input { font: inherit; padding: .15rem .3rem; }
@media (prefers-color-scheme: dark) { body, header { background: #14171d; color: #e3e6ec; } .desc { color: #b9bfcc; }
.out { background: #1e222a; } details { border-color: #2c313b; } td, th { border-color: #262b34; } }
"""

DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>API docs</title>
<style>{_STYLE}</style>
</head>
<body>
<header><label>API key <input id="key" type="password" size="48" autocomplete="off"
 placeholder="hc_… (sent as Authorization: Bearer)"></label>
 <a href="/openapi.json">openapi.json</a></header>
<main id="root"></main>
<script>{_SCRIPT}</script>
</body>
</html>
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
DOCS_HEADERS = {
    # nothing but this page's own script and style, and fetches to this server
    "Content-Security-Policy": f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
                               f"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               f"frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def document() -> dict:
    """The OpenAPI document of `create_app()` (the app needs no snapshot to describe itself)."""
    from hitcraft_assets.app.main import create_app

    return create_app(serving_path=Path("/nonexistent/serving.duckdb"),
                      app_db_path=Path("/nonexistent/app.sqlite")).openapi()


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hitcraft_assets.app.openapi", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when different")
    args = parser.parse_args(argv)
    text = render(document())
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        verdict = "up to date" if same else "differs from the app: run python -m hitcraft_assets.app.openapi"
        print(f"{args.out}: {verdict}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
