// Calls to the control plane's API with the browser session: the session cookie goes along by itself, every
// write carries the session's CSRF token, and every call the organization the user acts for.

export const CSRF_HEADER = "X-CSRF-Token";
export const ORG_HEADER = "X-Bifrost-Org";

/** One error of a 422 answer, as FastAPI locates it: `["body", "parameters", "count"]`. */
export interface FieldProblem {
  loc: (string | number)[];
  msg: string;
  type?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly detail: unknown;

  constructor(status: number, detail: unknown) {
    super(describeDetail(status, detail));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }

  /** The per-field errors of a 422 answer; empty for any other. */
  get fieldProblems(): FieldProblem[] {
    return Array.isArray(this.detail) ? this.detail.filter(isFieldProblem) : [];
  }
}

function isFieldProblem(value: unknown): value is FieldProblem {
  return typeof value === "object" && value !== null && Array.isArray((value as FieldProblem).loc);
}

/** A sentence for what the API answered: its `detail` message, or each field's problem. */
export function describeDetail(status: number, detail: unknown): string {
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail)) {
    const problems = detail.filter(isFieldProblem).map((problem) => {
      const where = problem.loc.filter((part) => part !== "body").join(".");
      return where ? `${where}: ${problem.msg}` : problem.msg;
    });
    if (problems.length) return problems.join("; ");
  }
  return `The server answered ${status}.`;
}

interface Context {
  csrfToken: string | null;
  org: string | null;
  onUnauthorized: () => void;
}

const context: Context = { csrfToken: null, org: null, onUnauthorized: () => undefined };

export function setCsrfToken(token: string | null): void {
  context.csrfToken = token;
}

export function setActingOrg(org: string | null): void {
  context.org = org;
}

export function actingOrg(): string | null {
  return context.org;
}

/** Called when the API says the session is gone (expired, closed elsewhere). */
export function onUnauthorized(callback: () => void): void {
  context.onUnauthorized = callback;
}

export function unauthorized(): void {
  context.onUnauthorized();
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: unknown;
  query?: Query;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Whether to send the organization acted for (the calls that find out who is signed in do not). */
  withOrg?: boolean;
  /** Whether a 401 means the session ended; a failed sign-in is a 401 too. */
  signsOutOn401?: boolean;
}

export function withQuery(path: string, query: Query | undefined): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** The headers every call sends for `method`. */
export function headersFor(method: string, withOrg = true): Record<string, string> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET" && context.csrfToken) headers[CSRF_HEADER] = context.csrfToken;
  if (withOrg && context.org) headers[ORG_HEADER] = context.org;
  return headers;
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const method = options.method ?? "GET";
  const headers = { ...headersFor(method, options.withOrg ?? true), ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(withQuery(path, options.query), {
    method,
    headers,
    body,
    credentials: "same-origin",
    signal: options.signal,
  });
  if (!response.ok) {
    const detail = await readDetail(response);
    if (response.status === 401 && (options.signsOutOn401 ?? true)) context.onUnauthorized();
    throw new ApiError(response.status, detail);
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

async function readDetail(response: Response): Promise<unknown> {
  try {
    const body: unknown = await response.json();
    return typeof body === "object" && body !== null && "detail" in body ? body.detail : body;
  } catch {
    return null;
  }
}
