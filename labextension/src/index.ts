/**
 * nb2container in JupyterLab: the "Containerize…" command (palette, notebook toolbar, notebook
 * context menu), its dialog, and the side panel that follows builds.
 *
 * A build from the saved notebook goes to the server extension (a fresh kernel runs the
 * notebook, as `nb2container build` does); one from the live kernel sends `%containerize` to the
 * notebook's own kernel. Both are recorded in the same store of runs, which the panel follows.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { CommandToolbarButton, ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import * as api from './api';
import { askChoice, IChoice } from './dialog';
import { BuildsPanel, messageOf } from './panel';

const COMMAND = 'nb2container:containerize';

const containerIcon = new LabIcon({
  name: 'nb2container:container',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 7l9-4 9 4v10l-9 4-9-4V7zm2 1.5v7.2l6 2.7v-7.2L5 8.5zm8 9.9l6-2.7V8.5l-6 2.7v7.2zM6.2 7L12 9.6 17.8 7 12 4.4 6.2 7z"/>' +
    '</g></svg>'
});

/** How the magic is asked for, from the live kernel, so the reply names the run it started. */
function magicCode(choice: IChoice): string {
  const words = [choice.fn];
  for (const [key, value] of Object.entries(choice.options)) {
    const flag = `--${key.replace(/_/g, '-')}`;
    if (value === true) {
      words.push(flag);
    } else if (Array.isArray(value)) {
      for (const item of value) {
        words.push(flag, shellQuote(String(item)));
      }
    } else {
      words.push(flag, shellQuote(String(value)));
    }
  }
  const line = JSON.stringify(words.join(' ')); // a JSON string is a Python string literal
  return (
    "get_ipython().run_line_magic('load_ext', 'nb2container')\n" +
    `_nb2container_build = get_ipython().run_line_magic('containerize', ${line})`
  );
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'"'"'`)}'`;
}

/** Send %containerize to the notebook's kernel; the id of the run it started, or its paragraph. */
async function containerizeInKernel(kernel: Kernel.IKernelConnection, choice: IChoice): Promise<string | null> {
  const future = kernel.requestExecute({
    code: magicCode(choice),
    silent: false,
    store_history: false,
    user_expressions: { run: "getattr(_nb2container_build, 'id', '')" }
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content;
  if (content.status === 'error') {
    if (content.ename === 'ModuleNotFoundError' && content.evalue.includes('nb2container')) {
      throw new Error(
        "This notebook's kernel cannot import nb2container, so it cannot containerize from the live kernel. " +
          "Install it in the kernel's environment (`%pip install nb2container` in a cell), or build from the " +
          'saved notebook instead.'
      );
    }
    throw new Error(content.evalue || content.ename);
  }
  if (content.status !== 'ok') {
    throw new Error('The kernel stopped before %containerize ran (it was interrupted or restarted).');
  }
  const expression = (content.user_expressions ?? {})['run'] as any;
  const text: string = expression?.data?.['text/plain'] ?? '';
  return text.replace(/^['"]|['"]$/g, '') || null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nb2container:plugin',
  description: 'Containerize a notebook function from JupyterLab, and follow its builds.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILayoutRestorer, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new BuildsPanel({
      openFolder: path => void app.commands.execute('filebrowser:go-to-path', { path: `/${path}` }),
      openFile: path => void app.commands.execute('docmanager:open', { path })
    });
    panel.title.icon = containerIcon;
    app.shell.add(panel, 'right', { rank: 900 });
    restorer?.add(panel, panel.id);

    const notebookOf = (current: NotebookPanel | null) => void panel.setNotebook(current ? current.context.path : null);
    tracker.currentChanged.connect((_, current) => notebookOf(current));
    void app.restored.then(() => notebookOf(tracker.currentWidget));

    const reveal = () => app.shell.activateById(panel.id);

    app.commands.addCommand(COMMAND, {
      label: 'Containerize…',
      caption: 'Build a container image that serves a function of this notebook, and check it against the notebook',
      icon: args => (args['toolbar'] ? containerIcon : undefined),
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const notebook = tracker.currentWidget;
        if (!notebook) {
          return;
        }
        const path = notebook.context.path;
        await panel.setNotebook(path);
        let found: api.IFunctions;
        let table: api.IOption[];
        try {
          [found, table] = await Promise.all([api.functions(path), api.options()]);
        } catch (error) {
          panel.showError(messageOf(error));
          reveal();
          return;
        }
        if (found.functions.length === 0) {
          panel.showError(
            `${path} defines no function nb2container can serve. Define one with \`def\` in a cell ` +
              '(the one to serve takes JSON-like arguments and returns a value), save, then Containerize again.'
          );
          reveal();
          return;
        }
        const kernel = notebook.sessionContext.session?.kernel ?? null;
        const choice = await askChoice(path, found, table, notebook.context.model.dirty, kernel !== null);
        if (!choice) {
          return;
        }
        reveal();
        panel.starting(
          choice.mode === 'live'
            ? `${choice.fn} · capturing it in the live kernel…`
            : `${choice.fn} · starting a build of the saved notebook…`
        );
        try {
          if (choice.mode === 'live') {
            if (!kernel) {
              throw new Error('The notebook has no running kernel: start one and run its cells, or build from the saved notebook.');
            }
            const id = await containerizeInKernel(kernel, choice);
            if (id) {
              void panel.follow(id);
            } else {
              const history = await panel.refreshHistory();
              if (history[0]) {
                void panel.follow(history[0].id);
              }
            }
          } else {
            if (notebook.context.model.dirty) {
              await notebook.context.save();
            }
            const started = await api.startBuild(path, choice.fn, choice.options);
            void panel.follow(started.id);
            void panel.refreshHistory();
          }
        } catch (error) {
          panel.showError(messageOf(error));
        }
      }
    });

    palette?.addItem({ command: COMMAND, category: 'nb2container' });
    app.contextMenu.addItem({ command: COMMAND, selector: '.jp-Notebook', rank: 20 });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (notebookPanel: NotebookPanel) => {
        const button = new CommandToolbarButton({
          commands: app.commands,
          id: COMMAND,
          args: { toolbar: true },
          label: 'Containerize…'
        });
        button.addClass('nb2c-ToolbarButton');
        notebookPanel.toolbar.insertItem(10, 'nb2container-containerize', button);
        return button;
      }
    });
  }
};

export default plugin;
