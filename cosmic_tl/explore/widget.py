"""``cosmic_tl.explore(run, model=None)``: the explorer as a linked ipywidgets view in a notebook.

The run's maps (plotly ``FigureWidget``s on shared axes) sit side by side; clicking a cell, or
calling :meth:`Explorer.select`, selects that candidate everywhere: the scores panel, the
projection figure, the completions and, with a model, a circuitsvis token view of a chosen test
prompt (unsteered and steered, one shared colour scale) and the live steering panel.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import HTML

from cosmic_tl.explore.data import build_explorer_data
from cosmic_tl.explore.maps import CELLS_TRACE, SELECTED_TRACE, map_figure, projection_figure, status_line
from cosmic_tl.explore.projections import cell_key
from cosmic_tl.explore.live import Intervention, live_completions, token_views
from cosmic_tl.explore.source import ExplorerInputError, Part, open_source, run_parts
from cosmic_tl.steering import ACTIONS, steering_names
from cosmic_tl.tokenviz import projection_view, side_by_side


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _reply(text: str, counted: bool | None, judged: str) -> str:
    """A reply cell, marked where the run's judge counted it."""
    mark = f"<b>✔ {judged}</b><br>" if counted else ""
    return f"<td>{mark}{html.escape(text)}</td>"


class Explorer:
    """A linked view of one part of a run (the pipeline run, or one selection of an experiment).

    Attributes:
        selected: The selected cell, ``{"position", "layer"}``.
        maps: One ``FigureWidget`` per map (cosine, S_abl, S_add, score, KL, ...).
        scores: HTML panel of the selected candidate's scores, rank and filter reason.
        projection: ``FigureWidget`` of the positive / negative projections onto its r̂.
        completions: HTML of its saved completions (unsteered beside steered).
        tokens: circuitsvis token view (with a model).
        live: The live steering panel (with a model), else None.
        token_values: The last token view's ``{title: (tokens, values)}``.
        token_scale: The colour-scale limit both token views share.
        widget: The whole view (displayed when the Explorer is the cell's value).
    """

    def __init__(self, run, model=None, part: str | None = None):
        source = open_source(run)
        self.data = build_explorer_data(source)
        self.labels = self.data["concept"]["labels"]
        keys = [p["key"] for p in self.data["parts"]]
        if part is not None and part not in keys:
            raise ExplorerInputError(f"part {part!r} is not in this folder; it has {keys}.")
        key = part or keys[0]
        self.part = next(p for p in self.data["parts"] if p["key"] == key)
        self.run_part: Part = next(p for p in run_parts(source) if p.key == key)
        self.model = model
        self._candidates = self.run_part.candidates() if model is not None else None
        self.selected = self.part["chosen"] or {"position": self.part["positions"][-1], "layer": self.part["layers"][0]}
        self.maps = [go.FigureWidget(map_figure(self.part, m, self.selected)) for m in self.part["maps"]]
        for fig in self.maps:
            next(t for t in fig.data if t.name == CELLS_TRACE).on_click(self._on_click)
        self.scores = widgets.HTML()
        self.projection = go.FigureWidget(projection_figure(self.part, **self.selected))
        self.completions = widgets.HTML()
        self.tokens = widgets.Output()
        self.token_values: dict = {}
        self.token_scale: float | None = None
        self.live = _LivePanel(self) if model is not None else None
        self.widget = self._layout()
        self.select(**self.selected)

    def _layout(self) -> widgets.Widget:
        for fig in self.maps:
            fig.layout.width = 420
        grid = widgets.GridBox(self.maps, layout=widgets.Layout(grid_template_columns="repeat(3, 430px)"))
        title = widgets.HTML(f"<h3>{html.escape(self.data['title'])}: {html.escape(self.part['label'])}</h3>")
        side = widgets.VBox([self.scores, self.projection], layout=widgets.Layout(width="460px"))
        rows = [title, widgets.HBox([grid, side]), self.completions]
        if self.live is not None:
            rows += [self._token_controls(), self.tokens, self.live.widget]
        else:
            rows.append(widgets.HTML("<i>Pass model= to see token views and steer prompts live.</i>"))
        return widgets.VBox(rows)

    def test_prompts(self, dataset: str | None = None) -> list[str]:
        """The run's test instructions of ``dataset`` (a prompt key; default: the concept's positive key)."""
        return self.run_part.test_prompts(dataset or self.labels["positive_key"])

    def _token_controls(self) -> widgets.Widget:
        prompts = [(f"{self.labels[side]}: {p[:70]}", p) for side in ("positive", "negative")
                   for p in self.test_prompts(self.labels[f"{side}_key"])]
        self.token_prompt = widgets.Dropdown(options=prompts, description="token view", layout={"width": "700px"})
        self.token_prompt.observe(lambda _: self._update_tokens(), names="value")
        return self.token_prompt

    def _on_click(self, trace, points, state) -> None:
        if points.point_inds:
            self.select(points.ys[0], points.xs[0])

    def direction(self):
        """The selected candidate as a :class:`~cosmic_tl.directions.Direction` (needs the model's run files)."""
        candidates = self._candidates if self._candidates is not None else self.run_part.candidates()
        return candidates.direction(self.selected["position"], self.selected["layer"])

    def select(self, position: int, layer: int) -> None:
        """Select candidate (``position``, ``layer``) in every linked view."""
        if position not in self.part["positions"] or layer not in self.part["layers"]:
            raise ValueError(f"({position}, {layer}) is not a cell of the maps: positions {self.part['positions']}, "
                             f"layers {self.part['layers']}.")
        self.selected = {"position": int(position), "layer": int(layer)}
        for fig in self.maps:
            marker = next(t for t in fig.data if t.name == SELECTED_TRACE)
            marker.x, marker.y = [layer], [position]
        self.scores.value = self._scores_html()
        new = projection_figure(self.part, position, layer)
        with self.projection.batch_update():
            self.projection.data = []
            self.projection.add_traces(new.data)
            self.projection.layout = new.layout
        self.completions.value = self._completions_html()
        if self.live is not None:
            self._update_tokens()

    def candidate(self) -> dict | None:
        """The selected candidate's row (scores, kept, reason, chosen, rank), None if it was not scored."""
        return self.part["candidates"].get(cell_key(self.selected["position"], self.selected["layer"]))

    def _scores_html(self) -> str:
        position, layer = self.selected["position"], self.selected["layer"]
        i, j = self.part["positions"].index(position), self.part["layers"].index(layer)
        rows = "".join(f"<tr><th>{html.escape(m['label'])}</th><td>{_fmt(m['z'][i][j])}</td></tr>"
                       for m in self.part["maps"])
        return (f"<h4>Candidate position {position}, layer {layer}</h4>"
                f"<b>{html.escape(status_line(self.candidate()))}</b><table>{rows}</table>")

    def _completions_html(self) -> str:
        entry = self.part["completions"].get(cell_key(self.selected["position"], self.selected["layer"]))
        if entry is None:
            return "<i>No completions saved for this candidate (`cosmic-tl explore RUN_DIR --top-k K` adds them).</i>"
        names = {self.labels["positive_key"]: self.labels["positive"], self.labels["negative_key"]: self.labels["negative"]}
        judged = html.escape(self.labels["judged"])
        out = []
        for s in entry["sets"]:
            cells = "".join(f"<tr><td>{html.escape(r['prompt'])}</td>{_reply(r['baseline'], r.get('baseline_counted'), judged)}"
                            f"{_reply(r['steered'], r.get('steered_counted'), judged)}</tr>" for r in s["rows"])
            note = (f"<i>✔ {judged}: counted as {judged} by the run's judge {html.escape(s['judge'])}.</i>"
                    if s.get("judge") else "")
            out.append(f"<h4>{html.escape(names.get(s['dataset'], s['dataset']))} test prompts: unsteered vs "
                       f"{s['action']}</h4>{note}<table><tr><th>prompt</th><th>unsteered</th><th>{s['action']}</th></tr>"
                       f"{cells}</table>")
        return "".join(out)

    def _update_tokens(self) -> None:
        if self.candidate() is None or (self.candidate()["scores"].get("r_norm") or 0) == 0:
            self.token_values = {}
            self.tokens.outputs = ()
            return
        base = self.run_part.model_hooks(self.model)
        self.token_values = token_views(self.model, self.direction(), self.token_prompt.value,
                                        self.live.intervention(), base)
        # One colour scale for both views, so the steered prompt's colours compare with the unsteered.
        self.token_scale = max(max(abs(v) for v in values) for _, values in self.token_values.values()) or 1e-8
        views = {title: projection_view(tokens, values, max_abs=self.token_scale)
                 for title, (tokens, values) in self.token_values.items()}
        self.tokens.outputs = ()
        self.tokens.append_display_data(HTML(side_by_side(views).data))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class _LivePanel:
    """Prompt box, steering rule, action, α and the greedy completion without and with steering."""

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        alpha = explorer.part["alpha"] if explorer.part["alpha"] is not None else 1.0
        self.prompt = widgets.Textarea(value=explorer.test_prompts()[0], description="prompt",
                                       layout={"width": "700px", "height": "60px"})
        # Every registered steering rule gets a button; the run's own rule is selected.
        names = list(steering_names())
        steering = explorer.part["steering"] if explorer.part["steering"] in names else names[0]
        self.steering = widgets.ToggleButtons(options=names, value=steering, description="rule")
        self.action = widgets.ToggleButtons(options=list(ACTIONS), description="action")
        self.alpha = widgets.FloatSlider(value=alpha, min=-1.0, max=4.0, step=0.1, description="α")
        self.button = widgets.Button(description="generate", button_style="primary")
        self.output = widgets.HTML()
        self.result: tuple[str, str] | None = None
        self.button.on_click(lambda _: self.run())
        for control in (self.steering, self.action, self.alpha):
            control.observe(lambda _: self.explorer._update_tokens(), names="value")
        self.widget = widgets.VBox([widgets.HTML("<h4>Steer a prompt live (greedy, 32 new tokens)</h4>"),
                                    self.prompt, self.steering, self.action, self.alpha, self.button, self.output])

    def intervention(self) -> Intervention:
        return Intervention(self.steering.value, self.action.value, float(self.alpha.value))

    def run(self) -> tuple[str, str]:
        """Generate for the prompt box with the selected candidate; returns (unsteered, steered)."""
        e = self.explorer
        base = e.run_part.model_hooks(e.model)
        self.result = live_completions(e.model, e.direction(), self.prompt.value, self.intervention(), base)
        where = f"candidate ({e.selected['position']}, {e.selected['layer']}), {self.intervention().describe()}"
        self.output.value = (f"<table><tr><th>unsteered</th><th>{html.escape(where)}</th></tr><tr>"
                             f"<td>{html.escape(self.result[0])}</td><td>{html.escape(self.result[1])}</td></tr></table>")
        return self.result


def explore(run, model=None, part: str | None = None) -> Explorer:
    """The linked explorer of a run folder, for a notebook (display the returned object).

    Args:
        run: The run or experiment folder (a path) or a :class:`~cosmic_tl.runs.reader.Run`.
        model: The run's model; adds token views and the live steering panel.
        part: Which selection of an experiment folder (e.g. ``"stage2"``); default the first.
    """
    return Explorer(run, model=model, part=part)
