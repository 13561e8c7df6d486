/**
 * The server extension's routes (nb2container/server_extension.py), typed.
 *
 * Every refusal comes back as nb2container's own paragraph in `message`; `RequestError`
 * carries it to the panel, which shows it as it is.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IFunctionChoice {
  name: string;
  cell: number;
}

export interface IFunctions {
  functions: IFunctionChoice[];
  default: string | null;
}

/** One option from the options table the CLI, the magic and the configuration file share. */
export interface IOption {
  key: string;
  flag: string;
  help: string;
  kind: 'flag' | 'list' | 'int' | 'float' | 'str' | string;
  default: unknown;
  choices: string[] | null;
}

export interface IRun {
  id: string;
  notebook: string;
  function: string;
  source: string;
  started: string;
  pid: number;
  state: string;
  verdict: string;
  image: string | null;
  size_bytes: number | null;
  folder: string | null;
  /** The build folder relative to the server's root, when it lies under it. */
  folder_path: string | null;
  ended: string | null;
  alive: boolean;
}

export interface IEvent {
  id: number;
  time: string;
  kind: 'step' | 'detail' | 'reused' | 'warning' | 'log' | 'verdict' | 'error' | string;
  text: string;
  ok?: boolean;
  image?: string | null;
  size_bytes?: number | null;
}

export interface IEvents {
  events: IEvent[];
  run: IRun;
  ended: boolean;
}

export interface ICase {
  cell: number;
  call: string;
  expected: unknown;
  actual: unknown;
  stored: unknown;
  verdict: string;
  where: string;
  difference: string | null;
  stale_difference: string | null;
}

export interface IReport {
  image: string | null;
  size_bytes: number | null;
  build_folder: string | null;
  verdict: { ok: boolean; words: string; reasons: string[] };
  refusal: string | null;
  smoke: { cases: ICase[] } | null;
}

export class RequestError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export async function request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nb2container', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new RequestError(
      `The Jupyter server did not answer (${error}). Check that it is still running, then try again.`,
      0
    );
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data?.message ||
      (response.status === 404 && !data
        ? "The Jupyter server has no nb2container routes: install nb2container in the server's environment " +
          '(pip install nb2container) and restart it.'
        : `The server answered ${response.status} ${response.statusText}.`);
    throw new RequestError(message, response.status);
  }
  return data as T;
}

export function functions(path: string): Promise<IFunctions> {
  return request<IFunctions>(`functions?path=${encodeURIComponent(path)}`);
}

export function options(): Promise<IOption[]> {
  return request<IOption[]>('options');
}

export function startBuild(path: string, fn: string, given: Record<string, unknown>): Promise<{ id: string; run: IRun }> {
  return request('builds', { method: 'POST', body: JSON.stringify({ path, function: fn, options: given }) });
}

export function runsOf(path: string): Promise<IRun[]> {
  return request<IRun[]>(`runs?path=${encodeURIComponent(path)}`);
}

export function run(id: string): Promise<IRun> {
  return request<IRun>(`runs/${encodeURIComponent(id)}`);
}

export function events(id: string, after: number, wait: number): Promise<IEvents> {
  return request<IEvents>(`runs/${encodeURIComponent(id)}/events?after=${after}&wait=${wait}`);
}

export function report(id: string): Promise<IReport> {
  return request<IReport>(`runs/${encodeURIComponent(id)}/report`);
}

export function cancel(id: string): Promise<IRun> {
  return request<IRun>(`runs/${encodeURIComponent(id)}`, { method: 'DELETE' });
}
