// Draws the dashboard's charts: every <div class="vega" data-spec="ID"> gets the Vega-Lite spec of the
// <script type="application/json" id="ID"> block, drawn as SVG by vega-embed (the bundle of vl-convert,
// loaded before this module). The specs are the email's (hitcraft_assets/delivery/charts.py); here they are
// made to fit the page: a clear background, and in dark mode the colours of the spec swapped for their dark
// counterparts (the map is in <script id="chart-colors">, from hitcraft_assets/app/web/render.py).
//
// No eval: `ast: true` makes Vega interpret its expressions instead of compiling them with new Function, and
// `defaultStyle: false` keeps vega-embed from injecting a <style> element (app.css styles the charts), so
// the page's Content-Security-Policy needs neither 'unsafe-eval' nor 'unsafe-inline'.

const colours = JSON.parse(document.getElementById("chart-colors")?.textContent || "{}");
const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

function isDark() {
  const theme = document.documentElement.dataset.theme;
  if (theme === "dark") return true;
  if (theme === "light") return false;
  return darkQuery.matches;
}

function recolour(value, map) {
  if (Array.isArray(value)) return value.map((v) => recolour(v, map));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = recolour(v, map);
    return out;
  }
  if (typeof value === "string") {
    const swapped = map[value.toLowerCase()];
    return swapped === undefined ? value : swapped;
  }
  return value;
}

function themed(spec, dark) {
  const out = dark ? recolour(spec, colours.dark || {}) : structuredClone(spec);
  out.background = "transparent";
  out.config = { ...(out.config || {}), background: "transparent" };
  return out;
}

async function draw(el) {
  const source = document.getElementById(el.dataset.spec || "");
  if (!source || typeof window.vegaEmbed !== "function") return;
  const dark = isDark();
  const spec = themed(JSON.parse(source.textContent), dark);
  if (el.hcView) el.hcView.finalize();
  // Vega marks the element it draws into as its own graphics document; it draws into a child, so that the
  // figure's div keeps role="img" and its aria-label (the caption), and the summary beside it is what a
  // screen reader reads
  const target = document.createElement("div");
  target.className = "vega-target";
  target.setAttribute("aria-hidden", "true");
  el.replaceChildren(target);
  try {
    const result = await window.vegaEmbed(target, spec, {
      actions: false, renderer: "svg", ast: true, defaultStyle: false, logLevel: 1,
      tooltip: { disableDefaultStyle: true, theme: dark ? "dark" : "light" },
    });
    el.hcView = result;
    el.dataset.drawn = dark ? "dark" : "light";
  } catch (err) {
    el.dataset.drawn = "error";
    el.textContent = "This chart could not be drawn; the text and the table beside it hold its data.";
    console.error("chart", el.dataset.spec, err);
  }
}

function drawAll(root = document, force = false) {
  for (const el of root.querySelectorAll("div.vega[data-spec]")) {
    if (force || !el.dataset.drawn) draw(el);
  }
}

drawAll();
// content swapped in by htmx (the insights feed) may bring charts
document.addEventListener("htmx:load", (event) => drawAll(event.detail?.elt || document));
// a theme change redraws every chart in the other palette
darkQuery.addEventListener("change", () => drawAll(document, true));
document.addEventListener("hc:themechange", () => drawAll(document, true));
