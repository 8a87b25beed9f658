// The explorer page's behaviour: linked maps, the selected candidate's panel, projection and
// completions. Reads the JSON in <script id="explorer-data">; exposes window.cosmicExplorer.
(function () {
  "use strict";
  var statusBox = document.getElementById("script-status");

  function fail(message) {
    statusBox.hidden = false;
    statusBox.className = "error";
    statusBox.textContent = "The explorer's script failed (" + message + "). The configuration, effects " +
      "and figure links on this page are still valid; the run's numbers are also in report.md.";
  }
  window.addEventListener("error", function (event) { fail(event.message); });

  var data, state = { part: null, selected: null };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }
  function fmt(v) { return v === null || v === undefined ? "n/a" : Number(v).toPrecision(4); }
  function key(position, layer) { return position + "," + layer; }
  function part() { return data.parts.filter(function (p) { return p.key === state.part; })[0]; }

  function statusOf(row) {
    if (!row) return ["status-none", "not scored (layer skipped by the selection)"];
    if (row.kept) return ["status-kept", "kept, rank " + row.rank + (row.chosen ? " (chosen)" : "")];
    return ["status-filtered", "filtered: " + row.reason];
  }

  function renderTabs() {
    var tabs = document.getElementById("part-tabs");
    tabs.innerHTML = "";
    if (data.parts.length < 2) return;
    data.parts.forEach(function (p) {
      var b = el("button", { text: p.label, "data-part": p.key, class: p.key === state.part ? "active" : "" });
      b.addEventListener("click", function () { showPart(p.key); });
      tabs.appendChild(b);
    });
  }

  function renderMaps(p) {
    var box = document.getElementById("maps");
    box.innerHTML = "";
    data.plots[p.key].forEach(function (fig, i) {
      var div = el("div", { class: "map", id: "map-" + p.maps[i].key, "data-map": p.maps[i].key });
      box.appendChild(div);
      Plotly.newPlot(div, fig.data, fig.layout, { displayModeBar: false, responsive: true });
      div.on("plotly_click", function (event) {
        var point = event.points[0];
        select(point.y, point.x);
      });
    });
  }

  function moveSelectionMarkers(position, layer) {
    document.querySelectorAll("#maps .map").forEach(function (div) {
      var index = div.data.findIndex(function (t) { return t.name === "selected"; });
      Plotly.restyle(div, { x: [[layer]], y: [[position]] }, [index]);
    });
  }

  function renderPanel(p, position, layer) {
    var row = p.candidates[key(position, layer)], status = statusOf(row);
    document.getElementById("cell-position").textContent = position;
    document.getElementById("cell-layer").textContent = layer;
    var statusNode = document.getElementById("cell-status");
    statusNode.className = status[0];
    statusNode.textContent = status[1];
    var rows = p.maps.map(function (m) {
      var i = p.positions.indexOf(position), j = p.layers.indexOf(layer);
      var v = i < 0 || j < 0 ? null : m.z[i][j];
      return el("tr", { "data-score": m.key }, [el("th", { text: m.label }), el("td", { class: "num", text: fmt(v) })]);
    });
    if (row && row.scores.r_norm !== undefined) {
      rows.push(el("tr", { "data-score": "r_norm" }, [el("th", { text: "‖r‖" }), el("td", { class: "num", text: fmt(row.scores.r_norm) })]));
    }
    var table = document.getElementById("cell-scores");
    table.innerHTML = "";
    rows.forEach(function (r) { table.appendChild(r); });
  }

  function renderProjection(p, position, layer) {
    var div = document.getElementById("projection"), note = document.getElementById("projection-note");
    var proj = p.projections, curve = proj ? proj.curves[key(position, layer)] : null;
    if (!proj || !curve) {
      Plotly.purge(div);
      div.innerHTML = "";
      note.textContent = proj ? "This candidate's r is zero: it has no direction to project on." :
        "No projections: the run's candidates file is missing.";
      return;
    }
    var traces = [];
    [["positive", "#d62728", "rgba(214,39,40,0.15)"], ["negative", "#1f77b4", "rgba(31,119,180,0.15)"]].forEach(function (c) {
      var m = curve[c[0]].mean, s = curve[c[0]].std, name = p.labels[c[0]];
      if (s) {
        var up = m.map(function (v, i) { return v + s[i]; }), down = m.map(function (v, i) { return v - s[i]; });
        traces.push({ x: proj.layers.concat(proj.layers.slice().reverse()), y: up.concat(down.reverse()), fill: "toself",
          fillcolor: c[2], line: { width: 0 }, hoverinfo: "skip", showlegend: false, type: "scatter" });
      }
      traces.push({ x: proj.layers, y: m, mode: "lines+markers", name: name, line: { color: c[1] }, type: "scatter",
        hovertemplate: name + "<br>layer %{x}<br>%{y:.4g}<extra></extra>" });
    });
    // plotly.js 3 reads axis titles only as {text: ...}; a bare string draws no title.
    Plotly.react(div, traces, {
      height: 260, margin: { l: 50, r: 10, t: 30, b: 40 }, title: { text: "projection onto r̂[" + position + ", " + layer + "]", font: { size: 13 } },
      xaxis: { title: { text: "layer ℓ (residual stream entering block ℓ, position " + position + ")" } },
      yaxis: { title: { text: "⟨x, r̂⟩" } },
      shapes: [{ type: "line", x0: layer, x1: layer, yref: "paper", y0: 0, y1: 1, line: { color: "#ff7f0e", dash: "dot" } }],
      legend: { orientation: "h", y: 1.12, x: 1, xanchor: "right" }
    }, { displayModeBar: false, responsive: true });
    note.textContent = proj.label + ".";
  }

  function renderCompletions(p, position, layer) {
    var box = document.getElementById("completions");
    box.innerHTML = "";
    var entry = p.completions[key(position, layer)];
    box.appendChild(el("h2", { text: "Completions of candidate (" + position + ", " + layer + ")" }));
    if (!entry) {
      box.appendChild(el("p", { class: "muted", text: "No completions saved for this candidate. `cosmic-tl explore " +
        data.folder + " --top-k K` precomputes them for the chosen candidate and the top K by score." }));
      return;
    }
    box.appendChild(el("p", { class: "muted", text: entry.source === "run" ? "From the run's test completions (greedy)." :
      "Precomputed by `cosmic-tl explore --top-k` (greedy, first test prompts)." }));
    var judged = data.concept.labels.judged;
    entry.sets.forEach(function (set) {
      var label = set.action + (set.action === "addition" ? " (α = " + set.alpha + ")" : "");
      box.appendChild(el("h3", { text: promptsName(set.dataset) + " test prompts: unsteered vs " + label +
        (set.n_total > set.rows.length ? " (first " + set.rows.length + " of " + set.n_total + ")" : "") }));
      if (set.judge) {
        box.appendChild(el("p", { class: "muted", text: "Marked \u2714 " + judged + ": the replies the run's judge " +
          set.judge + " counted as " + judged + " (the run's own verdicts; its counts are the report's)." }));
      }
      var table = el("table", {}, [el("tr", {}, [el("th", { text: "prompt" }),
        el("th", { text: "unsteered" + countText(set, "baseline_counted") }),
        el("th", { text: label + countText(set, "steered_counted") })])]);
      set.rows.forEach(function (r) {
        table.appendChild(el("tr", {}, [el("td", { text: r.prompt }),
          replyCell(r.baseline, r.baseline_degenerate, r.baseline_counted, judged),
          replyCell(r.steered, r.steered_degenerate, r.steered_counted, judged)]));
      });
      box.appendChild(table);
    });
  }

  function promptsName(dataset) {
    var labels = data.concept.labels;
    return dataset === labels.positive_key ? labels.positive : dataset === labels.negative_key ? labels.negative : dataset;
  }

  // ", 3/8 counted": how many of a column's replies the run's judge counted (none known: "").
  function countText(set, field) {
    var known = set.rows.filter(function (r) { return r[field] === true || r[field] === false; });
    if (!known.length) return "";
    return " (" + known.filter(function (r) { return r[field]; }).length + "/" + known.length + " " + data.concept.labels.judged + ")";
  }

  // A reply cell: marked when the run's judge counted it, and when it is degenerate (empty, looping, not language).
  function replyCell(text, degenerate, counted, judged) {
    var cell = el("td", { text: text }), classes = [];
    if (degenerate) {
      classes.push("degenerate");
      cell.insertBefore(el("span", { class: "flag", text: "degenerate: " + degenerate }), cell.firstChild);
    }
    if (counted) {
      classes.push("counted");
      cell.insertBefore(el("span", { class: "verdict", text: "\u2714 " + judged }), cell.firstChild);
    }
    cell.className = classes.join(" ");
    return cell;
  }

  function renderJumpList(p) {
    var box = document.getElementById("jump");
    box.innerHTML = "";
    var keys = Object.keys(p.completions);
    if (!keys.length) return;
    box.appendChild(el("span", { class: "muted", text: "with completions: " }));
    keys.forEach(function (k) {
      var parts = k.split(","), b = el("button", { text: "(" + k + ")" });
      b.addEventListener("click", function () { select(Number(parts[0]), Number(parts[1])); });
      box.appendChild(b);
    });
  }

  function select(position, layer) {
    var p = part();
    position = Number(position);
    layer = Number(layer);
    state.selected = { position: position, layer: layer };
    moveSelectionMarkers(position, layer);
    renderPanel(p, position, layer);
    renderProjection(p, position, layer);
    renderCompletions(p, position, layer);
  }

  function showPart(partKey) {
    state.part = partKey;
    var p = part();
    renderTabs();
    renderMaps(p);
    renderJumpList(p);
    var start = p.chosen || { position: p.positions[p.positions.length - 1], layer: p.layers[0] };
    select(start.position, start.layer);
  }

  try {
    if (typeof Plotly === "undefined") throw new Error("plotly.js did not load");
    data = JSON.parse(document.getElementById("explorer-data").textContent);
    showPart(data.parts[0].key);
    statusBox.hidden = true;
    window.cosmicExplorer = { select: select, showPart: showPart, state: state, data: data };
  } catch (e) {
    fail(e.message);
    throw e;
  }
})();
