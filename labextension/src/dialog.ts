/**
 * The "Containerize…" dialog: which function, from the saved notebook or the live kernel,
 * and the options of the one options table (what the server lets a request set).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IFunctions, IOption } from './api';

export type Mode = 'saved' | 'live';

export interface IChoice {
  fn: string;
  mode: Mode;
  /** Only the options the user changed, by key, in the types the server takes. */
  options: Record<string, unknown>;
}

/** Shown first; the rest of the table sits under "More options". */
const FIRST = ['tag', 'engine', 'allow_stale'];

class ChoiceBody extends Widget implements Dialog.IBodyWidget<IChoice> {
  constructor(found: IFunctions, table: IOption[], dirty: boolean, hasKernel: boolean) {
    super();
    this.addClass('nb2c-Dialog');
    const node = this.node;

    const fnRow = row(node, 'Function to serve');
    this._function = document.createElement('select');
    this._function.className = 'nb2c-Dialog-function';
    for (const choice of found.functions) {
      const option = new Option(`${choice.name}  (cell ${choice.cell})`, choice.name);
      option.selected = choice.name === found.default;
      this._function.add(option);
    }
    fnRow.appendChild(this._function);

    const modeRow = row(node, 'Build from');
    radio(modeRow, 'nb2c-mode', 'saved', 'the saved notebook (a fresh kernel runs it, as the CLI does)', true);
    this._live = radio(modeRow, 'nb2c-mode', 'live', "this notebook's live kernel (%containerize)", false);
    this._live.disabled = !hasKernel;
    if (dirty) {
      const note = document.createElement('p');
      note.className = 'nb2c-Dialog-note';
      note.textContent = 'The notebook has unsaved changes: a build from the saved notebook saves it first.';
      modeRow.appendChild(note);
    }

    const first = table.filter(o => FIRST.includes(o.key));
    const rest = table.filter(o => !FIRST.includes(o.key));
    const grid = document.createElement('div');
    grid.className = 'nb2c-Dialog-options';
    node.appendChild(grid);
    for (const option of first) {
      this._fields.push(field(grid, option));
    }
    const more = document.createElement('details');
    more.className = 'nb2c-Dialog-more';
    const summary = document.createElement('summary');
    summary.textContent = 'More options';
    more.appendChild(summary);
    const moreGrid = document.createElement('div');
    moreGrid.className = 'nb2c-Dialog-options';
    more.appendChild(moreGrid);
    node.appendChild(more);
    for (const option of rest) {
      this._fields.push(field(moreGrid, option));
    }
  }

  getValue(): IChoice {
    const options: Record<string, unknown> = {};
    for (const [option, input] of this._fields) {
      const value = read(option, input);
      if (value !== undefined) {
        options[option.key] = value;
      }
    }
    return { fn: this._function.value, mode: this._live.checked ? 'live' : 'saved', options };
  }

  private _function: HTMLSelectElement;
  private _live: HTMLInputElement;
  private _fields: [IOption, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement][] = [];
}

function row(parent: HTMLElement, label: string): HTMLElement {
  const section = document.createElement('div');
  section.className = 'nb2c-Dialog-row';
  const title = document.createElement('div');
  title.className = 'nb2c-Dialog-label';
  title.textContent = label;
  section.appendChild(title);
  parent.appendChild(section);
  return section;
}

function radio(parent: HTMLElement, name: string, value: string, text: string, checked: boolean): HTMLInputElement {
  const label = document.createElement('label');
  label.className = 'nb2c-Dialog-radio';
  const input = document.createElement('input');
  input.type = 'radio';
  input.name = name;
  input.value = value;
  input.checked = checked;
  label.append(input, ` ${text}`);
  parent.appendChild(label);
  return input;
}

function field(grid: HTMLElement, option: IOption): [IOption, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement] {
  const label = document.createElement('label');
  label.className = 'nb2c-Dialog-optionLabel';
  label.textContent = option.flag;
  label.title = option.help;
  let input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
  if (option.kind === 'flag') {
    input = document.createElement('input');
    input.type = 'checkbox';
  } else if (option.choices) {
    const select = document.createElement('select');
    select.add(new Option('(default)', ''));
    for (const choice of option.choices) {
      select.add(new Option(choice, choice));
    }
    input = select;
  } else if (option.kind === 'list') {
    const area = document.createElement('textarea');
    area.rows = 1;
    area.placeholder = 'one a line';
    input = area;
  } else {
    const text = document.createElement('input');
    text.type = option.kind === 'int' || option.kind === 'float' ? 'number' : 'text';
    text.placeholder = option.default === null || option.default === undefined ? '' : String(option.default);
    input = text;
  }
  input.name = option.key;
  input.title = option.help;
  input.classList.add('nb2c-Dialog-input');
  const help = document.createElement('div');
  help.className = 'nb2c-Dialog-help';
  help.textContent = option.help;
  const cell = document.createElement('div');
  cell.append(input, help);
  grid.append(label, cell);
  return [option, input];
}

function read(option: IOption, input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement): unknown {
  if (option.kind === 'flag') {
    return (input as HTMLInputElement).checked ? true : undefined;
  }
  const text = input.value.trim();
  if (!text) {
    return undefined;
  }
  if (option.kind === 'list') {
    return text.split('\n').map(line => line.trim()).filter(Boolean);
  }
  return text; // the server parses it with the CLI's own parser, and refuses it in the CLI's words
}

/** Ask; undefined when the user cancels. */
export async function askChoice(
  notebookName: string,
  found: IFunctions,
  table: IOption[],
  dirty: boolean,
  hasKernel: boolean
): Promise<IChoice | undefined> {
  const result = await showDialog<IChoice>({
    title: `Containerize a function of ${notebookName}`,
    body: new ChoiceBody(found, table, dirty, hasKernel),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Containerize' })],
    focusNodeSelector: '.nb2c-Dialog-function'
  });
  return result.button.accept && result.value ? result.value : undefined;
}
