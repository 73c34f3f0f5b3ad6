import { afterEach, describe, expect, it } from "vitest";
import { ORG_HEADER, setActingOrg } from "./api";
import { followExecution, type StreamHandlers } from "./stream";

function sse(...events: [string, number, unknown][]): string {
  return events.map(([kind, id, data]) => `event: ${kind}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`).join("");
}

function streamed(text: string): Response {
  // Cut mid-event, as the network may.
  const middle = Math.floor(text.length / 2);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text.slice(0, middle)));
      controller.enqueue(new TextEncoder().encode(text.slice(middle)));
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

function recorder() {
  const seen: string[] = [];
  const failures: Error[] = [];
  const handlers: StreamHandlers = {
    log: (line) => seen.push(`log ${line.line}`),
    status: (change) => seen.push(`status ${change.status}`),
    variables: (variables) => seen.push(`variables ${JSON.stringify(variables)}`),
    result: (result) => seen.push(`result ${JSON.stringify(result)}`),
    failed: (error) => failures.push(error),
  };
  return { seen, failures, handlers };
}

const log = (line: number) => ({ line, ts: "2026-01-01T00:00:00Z", level: "INFO", logger: "x", message: `m${line}` });
const status = (value: string) => ({ status: value, error_type: null, error_message: null, duration_ms: null });

afterEach(() => setActingOrg(null));

describe("following an execution", () => {
  it("passes each event on in order and stops once the execution has finished", async () => {
    const requests: RequestInit[] = [];
    const { seen, failures, handlers } = recorder();
    setActingOrg("org-1");
    await followExecution("e1", handlers, new AbortController().signal, {
      fetch: async (_url, init) => {
        requests.push(init ?? {});
        return streamed(
          sse(
            ["log", 1, log(1)],
            ["log", 2, log(2)],
            ["variables", 5, { variables: { a: 1 } }],
            ["result", 5, { result: [1] }],
            ["status", 5, status("Success")],
          ),
        );
      },
    });
    expect(seen).toEqual(["log 1", "log 2", 'variables {"a":1}', "result [1]", "status Success"]);
    expect(failures).toEqual([]);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.headers).toMatchObject({ [ORG_HEADER]: "org-1", Accept: "text/event-stream" });
  });

  it("passes each line of a batch on, in order, before the live lines", async () => {
    const { seen, handlers } = recorder();
    await followExecution("e1", handlers, new AbortController().signal, {
      fetch: async () =>
        streamed(
          sse(
            ["logs", 2, [log(1), log(2)]],
            ["logs", 3, [log(3)]],
            ["log", 4, log(4)],
            ["status", 4, status("Success")],
          ),
        ),
    });
    expect(seen).toEqual(["log 1", "log 2", "log 3", "log 4", "status Success"]);
  });

  it("opens the stream again when it ends before the execution does", async () => {
    const answers = [
      sse(["status", 1, status("Running")], ["log", 1, log(1)]),
      sse(["log", 1, log(1)], ["log", 2, log(2)], ["status", 3, status("Failed")]),
    ];
    const { seen, handlers } = recorder();
    let calls = 0;
    await followExecution("e1", handlers, new AbortController().signal, {
      fetch: async () => streamed(answers[calls++] ?? ""),
      retryDelayMs: () => 0,
    });
    expect(calls).toBe(2);
    expect(seen).toEqual(["status Running", "log 1", "log 1", "log 2", "status Failed"]);
  });

  it("gives up on an execution it may not see, saying why", async () => {
    const { seen, failures, handlers } = recorder();
    let calls = 0;
    await followExecution("nope", handlers, new AbortController().signal, {
      fetch: async () => {
        calls++;
        return new Response(JSON.stringify({ detail: "no execution 'nope'" }), { status: 404 });
      },
    });
    expect(calls).toBe(1);
    expect(seen).toEqual([]);
    expect(failures.map((error) => error.message)).toEqual(["no execution 'nope'"]);
  });

  it("stops when the page leaves", async () => {
    const abort = new AbortController();
    const { handlers } = recorder();
    let calls = 0;
    await followExecution("e1", handlers, abort.signal, {
      fetch: async () => {
        calls++;
        abort.abort();
        return streamed(sse(["status", 1, status("Running")]));
      },
      retryDelayMs: () => 60_000,
    });
    expect(calls).toBe(1);
  });
});
