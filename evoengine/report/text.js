// evoengine report: text on screen. A small offline syntax highlighter (Python, C-like
// languages, plain text with # comments) and line diffs of any two texts. Every piece of
// text becomes a text node (textContent), never markup.
(function () {
  "use strict";
  const Evo = window.Evo = window.Evo || {};

  const PY_KEYWORDS = "False None True and as assert async await break class continue def del elif else except " +
    "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case";
  const C_KEYWORDS = "auto break case char const continue default do double else enum extern float for goto if inline " +
    "int long register return short signed sizeof static struct switch typedef union unsigned void volatile while " +
    "class public private protected new delete this template typename namespace using virtual bool true false " +
    "let var function fn mut impl pub use mod trait match loop func package import type interface go defer " +
    "null nullptr self Self async await export extends";
  const LANGUAGES = {
    python: {
      token: /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|[rbfRBF]{0,2}"(?:\\.|[^"\\\n])*"|[rbfRBF]{0,2}'(?:\\.|[^'\\\n])*')|(\b\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?j?\b)|(@[\w.]+)|([A-Za-z_]\w*)/g,
      keywords: new Set(PY_KEYWORDS.split(" ")),
      defines: /^(def|class)$/,
    },
    c: {
      token: /(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)|(\b\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?[fFuUlL]*\b)|(#\s*\w+)|([A-Za-z_]\w*)/g,
      keywords: new Set(C_KEYWORDS.split(" ")),
      defines: /^(fn|func|function|class|struct)$/,
    },
    text: { token: /(^[ \t]*#[^\n]*)/gm, keywords: new Set(), defines: /^$/ },
  };

  // Which highlighter fits a text: Python, a C-like language, or plain text.
  Evo.language = function (text) {
    const head = text.slice(0, 4000);
    if (/^\s*(def |class |import |from \S+ import )/m.test(head)) return "python";
    const lines = head.split("\n").length, braces = (head.match(/[;{}]\s*$/gm) || []).length;
    return braces > lines / 5 ? "c" : "text";
  };

  // A candidate of several files (evoengine/files.py): each file after its "=== FILE: name ===" line.
  const FILE_HEADER = /^(=== FILE: ([\w.+\/-]+)(?: \(no newline at end\))? ===\n?)/m;
  const C_SUFFIX = /\.(c|h|cc|cpp|hpp|cu|rs|go|java|js|ts|swift|v|sv)$/;

  function highlightFiles(text) {
    const out = document.createDocumentFragment();
    const parts = text.split(FILE_HEADER);  // text, then [header, name, body] per file
    let language = "text";
    parts.forEach((part, i) => {
      if (i % 3 === 1) {
        const node = out.appendChild(document.createElement("span"));
        node.className = "tk-meta";
        node.textContent = part;
      } else if (i % 3 === 2) {
        language = part.endsWith(".py") ? "python" : C_SUFFIX.test(part) ? "c" : "text";
      } else if (part) {
        out.appendChild(Evo.highlight(part, language));
      }
    });
    return out;
  }

  // `text` as a fragment of spans: comments, strings, numbers, keywords, decorators, names defined.
  Evo.highlight = function (text, language) {
    if (!language && text.startsWith("=== FILE: ") && text.length <= 400000) return highlightFiles(text);
    const lang = LANGUAGES[language || Evo.language(text)] || LANGUAGES.text;
    const out = document.createDocumentFragment();
    const span = (s, cls) => {
      if (!s) return;
      if (!cls) { out.appendChild(document.createTextNode(s)); return; }
      const node = out.appendChild(document.createElement("span"));
      node.className = cls;
      node.textContent = s;
    };
    if (text.length > 400000) { span(text); return out; }  // too big to be worth colouring
    let at = 0, defining = false, m;
    lang.token.lastIndex = 0;
    while ((m = lang.token.exec(text)) !== null) {
      if (m[0] === "") { lang.token.lastIndex++; continue; }
      span(text.slice(at, m.index));
      at = m.index + m[0].length;
      if (m[1]) span(m[0], "tk-comment");
      else if (m[2]) span(m[0], "tk-string");
      else if (m[3]) span(m[0], "tk-number");
      else if (m[4]) span(m[0], "tk-meta");
      else if (lang.keywords.has(m[0])) { span(m[0], "tk-keyword"); defining = lang.defines.test(m[0]); continue; }
      else span(m[0], defining ? "tk-name" : null);
      defining = false;
    }
    span(text.slice(at));
    return out;
  };

  // ------------------------------------------------------------ diffs

  // The lines of `b` against those of `a`: a list of [op, line] with op " ", "-" or "+".
  // Common ends are trimmed first; the middle is an LCS table (a plain replace if huge).
  function lineDiff(a, b) {
    let start = 0, endA = a.length, endB = b.length;
    while (start < endA && start < endB && a[start] === b[start]) start++;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
    const out = a.slice(0, start).map(l => [" ", l]);
    const A = a.slice(start, endA), B = b.slice(start, endB), n = A.length, m = B.length;
    if (n * m > 4e6) {
      A.forEach(l => out.push(["-", l]));
      B.forEach(l => out.push(["+", l]));
    } else {
      const L = new Uint32Array((n + 1) * (m + 1)), w = m + 1;
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          L[i * w + j] = A[i] === B[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
        }
      }
      let i = 0, j = 0;
      while (i < n || j < m) {
        if (i < n && j < m && A[i] === B[j]) { out.push([" ", A[i]]); i++; j++; }
        else if (i < n && (j === m || L[(i + 1) * w + j] >= L[i * w + j + 1])) { out.push(["-", A[i]]); i++; }
        else { out.push(["+", B[j]]); j++; }
      }
    }
    a.slice(endA).forEach(l => out.push([" ", l]));
    return out;
  }
  Evo.lineDiff = lineDiff;

  // A unified diff (3 lines of context) as lines [cls, text], cls "hunk", "add", "del" or "".
  Evo.unifiedDiff = function (oldText, newText, context) {
    const ctx = context === undefined ? 3 : context;
    const ops = lineDiff(oldText.split("\n"), newText.split("\n"));
    const out = [];
    const changed = ops.map(o => o[0] !== " ");
    let k = 0, oldLine = 1, newLine = 1;
    const lineAt = [];
    ops.forEach(o => { lineAt.push([oldLine, newLine]); if (o[0] !== "+") oldLine++; if (o[0] !== "-") newLine++; });
    while (k < ops.length) {
      if (!changed[k]) { k++; continue; }
      let from = Math.max(0, k - ctx), to = k;
      while (to < ops.length) {
        if (changed[to]) { to++; continue; }
        let next = to;
        while (next < ops.length && !changed[next] && next - to < 2 * ctx) next++;
        if (next < ops.length && changed[next]) to = next; else break;
      }
      const end = Math.min(ops.length, to + ctx);
      const part = ops.slice(from, end);
      const olds = part.filter(o => o[0] !== "+").length, news = part.filter(o => o[0] !== "-").length;
      out.push(["hunk", "@@ -" + lineAt[from][0] + "," + olds + " +" + lineAt[from][1] + "," + news + " @@"]);
      part.forEach(o => out.push([o[0] === "+" ? "add" : o[0] === "-" ? "del" : "", o[0] + o[1]]));
      k = end;
    }
    return out;
  };

  // Put diff lines into `node` as one block per line.
  Evo.showDiff = function (node, lines) {
    if (!lines.length) { node.appendChild(Evo.make("div", "(identical text)", "meta")); return; }
    lines.forEach(([cls, text]) => node.appendChild(Evo.make("div", text || " ", cls)));
  };

  // Round-off noise is no change: `+0.0312`, `-1.5` or `±0`.
  Evo.delta = function (score, before) {
    if (score === null || before === null || score === undefined || before === undefined) return "";
    const d = score - before;
    if (Math.abs(d) <= 1e-9 * Math.max(1, Math.abs(score), Math.abs(before))) return "±0";
    const a = Math.abs(d);
    return (d > 0 ? "+" : "-") + (a < 1e-3 ? a.toExponential(2) : Number(a.toPrecision(4)).toString());
  };
})();
