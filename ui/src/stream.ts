// An execution's live events: the server-sent events of `/api/executions/{id}/stream`, read with fetch so the
// request carries the organization acted for. The stream starts with everything so far and ends once the
// execution has finished; one that ends before (a restart, a subscriber that fell behind) is opened again and
// starts over, which the handlers take in their stride (log lines are kept by number).

import { createParser, type EventSourceMessage } from "eventsource-parser";
import { ApiError, headersFor, unauthorized } from "./api";
import { isTerminal, type LogLine, type StatusChange } from "./types";

export interface StreamHandlers {
  log: (line: LogLine) => void;
  status: (change: StatusChange) => void;
  variables: (variables: Record<string, unknown> | null) => void;
  result: (result: unknown) => void;
  /** The stream cannot be read (the execution is not visible, the server refuses); it is not retried. */
  failed: (error: Error) => void;
}

export interface StreamOptions {
  fetch?: typeof fetch;
  /** How long to wait before opening the stream again after the `attempt`-th time in a row it ended early. */
  retryDelayMs?: (attempt: number) => number;
}

const defaultDelay = (attempt: number): number => Math.min(500 * 2 ** attempt, 10_000);

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Follows the execution until it has finished or `signal` aborts. */
export async function followExecution(
  executionId: string,
  handlers: StreamHandlers,
  signal: AbortSignal,
  options: StreamOptions = {},
): Promise<void> {
  const doFetch = options.fetch ?? fetch;
  const delay = options.retryDelayMs ?? defaultDelay;
  let finished = false;
  let attempt = 0;
  const parser = createParser({
    onEvent(event: EventSourceMessage) {
      attempt = 0;
      const data: unknown = JSON.parse(event.data);
      switch (event.event) {
        case "log":
          handlers.log(data as LogLine);
          break;
        case "logs": // the stored log comes in batches of lines
          for (const line of data as LogLine[]) handlers.log(line);
          break;
        case "status": {
          const change = data as StatusChange;
          if (isTerminal(change.status)) finished = true;
          handlers.status(change);
          break;
        }
        case "variables":
          handlers.variables((data as { variables: Record<string, unknown> | null }).variables);
          break;
        case "result":
          handlers.result((data as { result: unknown }).result);
          break;
      }
    },
  });
  while (!signal.aborted && !finished) {
    try {
      const response = await doFetch(`/api/executions/${encodeURIComponent(executionId)}/stream`, {
        headers: { ...headersFor("GET"), Accept: "text/event-stream" },
        credentials: "same-origin",
        cache: "no-store",
        signal,
      });
      if (response.status === 401) {
        unauthorized();
        return;
      }
      if (!response.ok || !response.body) {
        const body: unknown = await response.json().catch(() => null);
        const detail = typeof body === "object" && body !== null && "detail" in body ? body.detail : null;
        handlers.failed(new ApiError(response.status, detail));
        return;
      }
      parser.reset();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (!(error instanceof TypeError || (error instanceof DOMException && error.name === "NetworkError"))) {
        handlers.failed(error instanceof Error ? error : new Error(String(error)));
        return;
      }
    }
    if (!finished) await wait(delay(attempt++), signal);
  }
}
