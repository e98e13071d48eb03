"""The status page's own stylesheet and refresh script, served from the web itself (no CDN).

They are separate files rather than inline so the Content-Security-Policy can allow only 'self'.
The script re-fetches `/admin/fragment` every few seconds and swaps the page's <main>; when the
broker cannot be reached it keeps the last figures and says so, and when the session has ended
it goes to the sign-in form.
"""

from __future__ import annotations

__all__ = ["CSS", "JS", "REFRESH_SECONDS"]

REFRESH_SECONDS = 5

CSS = """
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f7f8fa; --card: #fff;
  --ok: #12805c; --warn: #b54708; --bad: #c01048; --busy: #1d4ed8; --idle: #667085; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 12px 20px; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; }
header h1 { font-size: 20px; margin: 0; flex: 1; }
.who { display: flex; align-items: center; gap: 10px; }
.who form { margin: 0; }
button, input { font: inherit; padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px; }
button { background: var(--fg); color: #fff; cursor: pointer; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 18px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 10px; }
h3 { font-size: 13px; margin: 14px 0 6px; color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.alert { background: #fef3f2; color: var(--bad); border: 1px solid #fecdca; border-radius: 6px;
  padding: 6px 10px; width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; }
.figure { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 110px; }
.figure b { display: block; font-size: 20px; }
.figure span { color: var(--muted); font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11px;
  font-weight: 600; color: #fff; background: var(--idle); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); }
.badge.bad { background: var(--bad); } .badge.busy { background: var(--busy); }
table.rows { width: 100%; border-collapse: collapse; }
table.rows th, table.rows td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
table.rows th { font-size: 12px; color: var(--muted); font-weight: 600; }
.chart { width: 100%; max-width: 720px; height: auto; display: block; }
.chart .bar { fill: var(--busy); } .chart .axis { stroke: var(--line); }
.chart .label { fill: var(--muted); font-size: 11px; }
ul.tasks { list-style: none; margin: 0; padding: 0; display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); }
li.task { display: flex; gap: 10px; border: 1px solid var(--line); border-radius: 8px; padding: 8px;
  min-width: 0; }
.thumb { width: 96px; height: 96px; object-fit: cover; border-radius: 6px; background: var(--line);
  flex: none; }
.meta { min-width: 0; overflow-wrap: anywhere; }
.prompt { margin-top: 2px; }
.fail { color: var(--bad); font-size: 12px; margin-top: 2px; }
.login { max-width: 380px; margin: 12vh auto; }
.login input { width: 100%; margin: 6px 0 12px; }
@media (max-width: 700px) {
  header, main, footer { padding: 10px 12px; }
  section { padding: 12px; }
  table.rows thead { display: none; }
  table.rows tr { display: block; border-bottom: 1px solid var(--line); padding: 6px 0; }
  table.rows td { display: flex; gap: 10px; border: 0; padding: 2px 0; }
  table.rows td::before { content: attr(data-label); color: var(--muted); min-width: 84px; font-size: 12px; }
  ul.tasks { grid-template-columns: 1fr; }
  .thumb { width: 72px; height: 72px; }
}
"""

JS = f"""'use strict';
(function () {{
  var main = document.getElementById('status');
  var offline = document.getElementById('offline');
  function refresh() {{
    fetch('/admin/fragment', {{credentials: 'same-origin', cache: 'no-store', redirect: 'manual'}})
      .then(function (response) {{
        if (response.type === 'opaqueredirect' || response.status === 401 || response.status === 403) {{
          window.location.assign('/admin/login');
          return null;
        }}
        if (!response.ok) {{ throw new Error('HTTP ' + response.status); }}
        return response.text();
      }})
      .then(function (html) {{
        if (html === null) {{ return; }}
        main.innerHTML = html;
        offline.hidden = true;
      }})
      .catch(function () {{ offline.hidden = false; }});
  }}
  setInterval(refresh, {REFRESH_SECONDS * 1000});
}})();
"""
