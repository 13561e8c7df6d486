/**
 * The side panel: the build being followed (its steps, log, verdict table, image) streamed from
 * the store of runs, and the history of the notebook's builds. Everything it shows comes from
 * the server's routes, so a page reload picks up where it was.
 */
import { Widget } from '@lumino/widgets';

import * as api from './api';

const POLL_SECONDS = 20; // one long poll waits this long for the next event
const HISTORY_SECONDS = 10; // how often the history looks for builds started elsewhere (the magic, the CLI)

export interface IPanelActions {
  openFolder(path: string): void;
  openFile(path: string): void;
}

export class BuildsPanel extends Widget {
  constructor(private readonly actions: IPanelActions) {
    super();
    this.id = 'nb2container-builds';
    this.addClass('nb2c-Panel');
    this.title.caption = 'nb2container: builds of this notebook';
    this.node.innerHTML = `
      <header class="nb2c-Panel-header">
        <h2>nb2container</h2>
        <div class="nb2c-Panel-notebook"></div>
      </header>
      <div class="nb2c-Panel-error" role="alert" hidden></div>
      <section class="nb2c-Run" hidden>
        <div class="nb2c-Run-head">
          <div class="nb2c-Run-title"></div>
          <button class="jp-mod-styled jp-mod-warn nb2c-Run-cancel" hidden>Cancel</button>
        </div>
        <ol class="nb2c-Steps"></ol>
        <ul class="nb2c-Warnings"></ul>
        <details class="nb2c-Log"><summary>Log</summary><pre></pre></details>
        <div class="nb2c-Verdict" hidden></div>
        <div class="nb2c-Image" hidden></div>
        <div class="nb2c-Links" hidden></div>
        <div class="nb2c-CasesBox"><table class="nb2c-Cases" hidden>
          <thead><tr><th>call</th><th>notebook</th><th>container</th><th>verdict</th></tr></thead>
          <tbody></tbody>
        </table></div>
      </section>
      <section class="nb2c-History">
        <h3>Builds of this notebook</h3>
        <p class="nb2c-History-empty">None yet: "Containerize…" in the notebook's toolbar or context menu starts one.</p>
        <table hidden><thead><tr><th>started</th><th>function</th><th>verdict</th><th>image</th><th>size</th></tr></thead>
        <tbody></tbody></table>
      </section>`;
    this.node.querySelector('.nb2c-Run-cancel')!.addEventListener('click', () => void this.cancel());
  }

  /** The notebook whose builds the panel shows (a path relative to the server's root). */
  get notebook(): string | null {
    return this._notebook;
  }

  async setNotebook(path: string | null): Promise<void> {
    if (path === this._notebook) {
      return;
    }
    this._notebook = path;
    this.select('.nb2c-Panel-notebook').textContent = path ?? 'Open a notebook to see its builds.';
    this.clearError();
    this._following = null;
    this._generation++;
    this.select('.nb2c-Run').hidden = true;
    const history = await this.refreshHistory();
    const live = history.find(run => run.alive) ?? history[0];
    if (live && path === this._notebook) {
      void this.follow(live.id);
    }
  }

  /** Show nb2container's paragraph as it is: what, where, what to do. */
  showError(message: string): void {
    const box = this.select('.nb2c-Panel-error');
    box.textContent = message;
    box.hidden = false;
  }

  clearError(): void {
    this.select('.nb2c-Panel-error').hidden = true;
  }

  /** Stop following the shown run and say what is starting, until its run is known. */
  starting(text: string): void {
    this._generation++;
    this._following = null;
    this.resetRun();
    this.select('.nb2c-Run-title').textContent = text;
    this.select('.nb2c-Run-cancel').hidden = true;
  }

  /** Follow one run from its first event to its verdict, however it was started. */
  async follow(id: string): Promise<void> {
    const generation = ++this._generation;
    this._following = id;
    this.resetRun();
    let after = 0;
    let ended = false;
    while (!ended && generation === this._generation) {
      let batch: api.IEvents;
      try {
        batch = await api.events(id, after, POLL_SECONDS);
      } catch (error) {
        if (generation === this._generation) {
          this.showError(messageOf(error));
        }
        return;
      }
      if (generation !== this._generation) {
        return;
      }
      for (const event of batch.events) {
        this.showEvent(event);
        after = event.id;
      }
      this.showRun(batch.run);
      ended = batch.ended;
    }
    if (generation !== this._generation) {
      return;
    }
    this.finishSteps();
    try {
      this.showReport(await api.report(id));
    } catch {
      // a build refused before its report (a bad notebook, a cancel): its paragraph is already shown
    }
    void this.refreshHistory();
  }

  async refreshHistory(): Promise<api.IRun[]> {
    const path = this._notebook;
    if (!path) {
      this.renderHistory([]);
      return [];
    }
    let history: api.IRun[] = [];
    try {
      history = await api.runsOf(path);
    } catch (error) {
      this.showError(messageOf(error));
    }
    if (path === this._notebook) {
      this.renderHistory(history);
    }
    return history;
  }

  protected onAfterAttach(): void {
    this._timer = window.setInterval(() => void this.watchHistory(), HISTORY_SECONDS * 1000);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this._timer);
  }

  /** A build started elsewhere (the magic typed in a cell, the CLI) is followed once it appears. */
  private async watchHistory(): Promise<void> {
    if (!this.isVisible || !this._notebook) {
      return;
    }
    const history = await this.refreshHistory();
    const live = history.find(run => run.alive);
    if (live && live.id !== this._following) {
      void this.follow(live.id);
    }
  }

  private async cancel(): Promise<void> {
    if (!this._following) {
      return;
    }
    try {
      await api.cancel(this._following);
    } catch (error) {
      this.showError(messageOf(error));
    }
  }

  private resetRun(): void {
    this.clearError();
    this.select('.nb2c-Run').hidden = false;
    this.select('.nb2c-Steps').replaceChildren();
    this.select('.nb2c-Warnings').replaceChildren();
    this.select('.nb2c-Log pre').textContent = '';
    this._logLines = 0;
    this.select('.nb2c-Log summary').textContent = 'Log';
    for (const selector of ['.nb2c-Verdict', '.nb2c-Image', '.nb2c-Links', '.nb2c-Cases']) {
      this.select(selector).hidden = true;
    }
    this.select('.nb2c-Cases tbody').replaceChildren();
  }

  private showEvent(event: api.IEvent): void {
    switch (event.kind) {
      case 'step': {
        this.finishSteps();
        const step = document.createElement('li');
        step.className = 'nb2c-Step nb2c-is-current';
        step.dataset.eventId = String(event.id);
        const text = document.createElement('span');
        text.className = 'nb2c-Step-text';
        text.textContent = event.text;
        const detail = document.createElement('div');
        detail.className = 'nb2c-Step-detail';
        step.append(text, detail);
        this.select('.nb2c-Steps').appendChild(step);
        break;
      }
      case 'detail': {
        const current = this.node.querySelector('.nb2c-Step:last-child .nb2c-Step-detail');
        if (current) {
          current.textContent = event.text;
        }
        break;
      }
      case 'reused': {
        // kept with its step once it is done: what this build took from an earlier one
        const step = this.node.querySelector('.nb2c-Step:last-child');
        if (step) {
          const note = document.createElement('div');
          note.className = 'nb2c-Step-reused';
          note.textContent = `reused ${event.text}`;
          step.appendChild(note);
        }
        break;
      }
      case 'warning': {
        const item = document.createElement('li');
        item.textContent = event.text;
        this.select('.nb2c-Warnings').appendChild(item);
        break;
      }
      case 'log': {
        const log = this.select('.nb2c-Log pre');
        log.textContent += event.text.endsWith('\n') ? event.text : event.text + '\n';
        this._logLines++;
        this.select('.nb2c-Log summary').textContent = `Log (${this._logLines} lines)`;
        break;
      }
      case 'verdict':
      case 'error': {
        const ok = event.kind === 'verdict' && event.ok === true;
        this.finishSteps(!ok);
        const verdict = this.select('.nb2c-Verdict');
        verdict.textContent = event.text;
        verdict.className = `nb2c-Verdict ${ok ? 'nb2c-is-ok' : 'nb2c-is-failed'}`;
        verdict.hidden = false;
        if (event.image) {
          this.showImage(event.image, event.size_bytes ?? null);
        }
        break;
      }
    }
  }

  private finishSteps(failed = false): void {
    const current = this.node.querySelectorAll('.nb2c-Step.nb2c-is-current');
    current.forEach(step => {
      step.classList.remove('nb2c-is-current');
      step.classList.add(failed ? 'nb2c-is-failed' : 'nb2c-is-done');
    });
  }

  private showRun(run: api.IRun): void {
    const when = run.started.slice(0, 19).replace('T', ' ');
    this.select('.nb2c-Run-title').textContent =
      `${run.function} · ${when} UTC · from ${run.source === 'lab' ? 'the saved notebook' : run.source === 'magic' ? 'the live kernel' : 'the CLI'} · ${run.alive ? 'building' : run.state}`;
    this.select('.nb2c-Run-cancel').hidden = !run.alive;
    const links = this.select('.nb2c-Links');
    links.replaceChildren();
    if (run.folder_path !== null && run.folder_path !== undefined) {
      const folder = run.folder_path;
      links.append(link('Build folder', () => this.actions.openFolder(folder)), ' · ',
        link('README', () => this.actions.openFile(`${folder}/README.md`)));
      links.hidden = false;
    } else if (run.folder) {
      links.textContent = `Build folder: ${run.folder}`;
      links.hidden = false;
    }
  }

  private showImage(image: string, size: number | null): void {
    const box = this.select('.nb2c-Image');
    box.replaceChildren('Image ');
    const tag = document.createElement('code');
    tag.className = 'nb2c-Image-tag';
    tag.textContent = image;
    box.appendChild(tag);
    if (size !== null) {
      const shown = document.createElement('span');
      shown.className = 'nb2c-Image-size';
      shown.textContent = ` · ${megabytes(size)}`;
      box.appendChild(shown);
    }
    box.hidden = false;
  }

  private showReport(report: api.IReport): void {
    if (report.image) {
      this.showImage(report.image, report.size_bytes);
    }
    const cases = report.smoke?.cases ?? [];
    const body = this.select('.nb2c-Cases tbody');
    body.replaceChildren();
    for (const c of cases) {
      const row = document.createElement('tr');
      row.className = `nb2c-Case nb2c-is-${verdictClass(c.verdict)}`;
      const shownNotebook = c.stored !== null && c.stored !== undefined ? c.stored : c.expected;
      const call = document.createElement('td');
      const where = document.createElement('div');
      where.className = 'nb2c-Case-where';
      where.textContent = c.where;
      call.append(c.call, where);
      row.appendChild(call);
      for (const text of [value(shownNotebook), value(c.actual), c.verdict]) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.appendChild(cell);
      }
      const why = c.difference || c.stale_difference;
      if (why) {
        row.title = why;
      }
      body.appendChild(row);
    }
    this.select('.nb2c-Cases').hidden = cases.length === 0;
  }

  private renderHistory(history: api.IRun[]): void {
    const table = this.node.querySelector('.nb2c-History table') as HTMLTableElement;
    const body = table.querySelector('tbody')!;
    body.replaceChildren();
    for (const run of history) {
      const row = document.createElement('tr');
      row.className = `nb2c-HistoryRow nb2c-is-${run.alive ? 'running' : run.state}`;
      row.dataset.runId = run.id;
      const cells = [run.started.slice(0, 16).replace('T', ' '), run.function,
        run.alive ? 'building…' : run.verdict || run.state, run.image ?? '',
        run.size_bytes ? megabytes(run.size_bytes) : ''];
      for (const text of cells) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.appendChild(cell);
      }
      row.addEventListener('click', () => void this.follow(run.id));
      body.appendChild(row);
    }
    table.hidden = history.length === 0;
    this.select('.nb2c-History-empty').hidden = history.length > 0;
  }

  private select(selector: string): HTMLElement {
    return this.node.querySelector(selector) as HTMLElement;
  }

  private _notebook: string | null = null;
  private _following: string | null = null;
  private _generation = 0;
  private _logLines = 0;
  private _timer = 0;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function link(text: string, onClick: () => void): HTMLAnchorElement {
  const anchor = document.createElement('a');
  anchor.href = '#';
  anchor.textContent = text;
  anchor.addEventListener('click', event => {
    event.preventDefault();
    onClick();
  });
  return anchor;
}

/** The same units the CLI prints: decimal megabytes. */
export function megabytes(size: number): string {
  return `${Math.round(size / 1e6)} MB`;
}

function verdictClass(verdict: string): string {
  if (verdict === 'match') {
    return 'match';
  }
  if (verdict.includes('STALE')) {
    return 'stale';
  }
  if (verdict === 'MISMATCH') {
    return 'mismatch';
  }
  return verdict === 'skipped' ? 'skipped' : 'notcompared';
}

function value(shown: unknown): string {
  const text = typeof shown === 'string' ? shown : JSON.stringify(shown);
  return text === undefined ? '' : text.length > 80 ? text.slice(0, 79) + '…' : text;
}
