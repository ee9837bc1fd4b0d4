// The small subset of Markdown that `ctxroute eval report` writes (headings, pipe tables,
// "- " lists, paragraphs, `code`, **bold**), rendered as DOM nodes: no HTML from the file is
// ever parsed, so a report cannot inject markup.
"use strict";

(function () {
  function inline(parent, text) {
    const re = /(`[^`]+`|\*\*[^*]+\*\*)/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      const tok = m[0];
      const el = document.createElement(tok.startsWith("`") ? "code" : "strong");
      el.textContent = tok.startsWith("`") ? tok.slice(1, -1) : tok.slice(2, -2);
      parent.appendChild(el);
      last = m.index + tok.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function cells(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|")) s = s.slice(0, -1);
    return s.split("|").map((c) => c.trim());
  }

  function render(text, container) {
    container.replaceChildren();
    const lines = text.replace(/\r\n/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) { i++; continue; }
      const h = /^(#{1,6})\s+(.*)$/.exec(line);
      if (h) {
        const level = Math.min(6, h[1].length + 2); // the page already has h1/h2
        const el = document.createElement("h" + level);
        inline(el, h[2]);
        container.appendChild(el);
        i++;
        continue;
      }
      if (line.trim().startsWith("|")) {
        const rows = [];
        while (i < lines.length && lines[i].trim().startsWith("|")) rows.push(lines[i++]);
        const table = document.createElement("table");
        const isRule = (r) => /^\s*\|?\s*:?-{2,}/.test(r) && /^[\s|:\-]+$/.test(r);
        let body = rows;
        if (rows.length > 1 && isRule(rows[1])) {
          const thead = table.createTHead().insertRow();
          for (const c of cells(rows[0])) {
            const th = document.createElement("th");
            th.scope = "col";
            inline(th, c);
            thead.appendChild(th);
          }
          body = rows.slice(2);
        }
        const tbody = table.createTBody();
        for (const r of body) {
          const tr = tbody.insertRow();
          for (const c of cells(r)) inline(tr.insertCell(), c);
        }
        const wrap = document.createElement("div");
        wrap.className = "table-wrap";
        wrap.tabIndex = 0;
        wrap.appendChild(table);
        container.appendChild(wrap);
        continue;
      }
      if (/^\s*[-*]\s+/.test(line)) {
        const ul = document.createElement("ul");
        while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) {
          const li = document.createElement("li");
          inline(li, lines[i].replace(/^\s*[-*]\s+/, ""));
          ul.appendChild(li);
          i++;
        }
        container.appendChild(ul);
        continue;
      }
      const para = [lines[i++].trim()];
      while (i < lines.length && lines[i].trim() && !/^(#|\||\s*[-*]\s)/.test(lines[i])) para.push(lines[i++].trim());
      const p = document.createElement("p");
      inline(p, para.join(" "));
      container.appendChild(p);
    }
  }

  window.renderMarkdown = render;
})();
