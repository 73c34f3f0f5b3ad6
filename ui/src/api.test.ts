import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, CSRF_HEADER, ORG_HEADER, api, describeDetail, setActingOrg, setCsrfToken, withQuery } from "./api";

afterEach(() => {
  vi.unstubAllGlobals();
  setCsrfToken(null);
  setActingOrg(null);
});

function answering(status: number, body: unknown) {
  const calls: [string, RequestInit][] = [];
  vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
    calls.push([url, init]);
    return new Response(body === undefined ? null : JSON.stringify(body), { status });
  });
  return calls;
}

describe("calls to the API", () => {
  it("send the CSRF token on writes only, and the organization acted for", async () => {
    setCsrfToken("csrf-1");
    setActingOrg("org-1");
    const calls = answering(200, {});
    await api("/api/workflows");
    await api("/api/keys", { method: "POST", body: { name: "k" } });
    await api("/api/orgs", { withOrg: false });
    const headers = calls.map(([, init]) => init.headers as Record<string, string>);
    expect(headers[0]?.[CSRF_HEADER]).toBeUndefined();
    expect(headers[0]?.[ORG_HEADER]).toBe("org-1");
    expect(headers[1]?.[CSRF_HEADER]).toBe("csrf-1");
    expect(headers[1]?.["Content-Type"]).toBe("application/json");
    expect(calls[1]?.[1].body).toBe('{"name":"k"}');
    expect(headers[2]?.[ORG_HEADER]).toBeUndefined();
  });

  it("leave out empty query values", () => {
    expect(withQuery("/api/executions", { status: "", workflow: "w", cursor: null, limit: 50 })).toBe(
      "/api/executions?workflow=w&limit=50",
    );
  });

  it("raise the server's message, each field's for a 422", async () => {
    answering(422, { detail: [{ loc: ["body", "parameters", "count"], msg: "must be at most 10", type: "x" }] });
    const error = await api("/api/workflows/w/execute", { method: "POST", body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect((error as ApiError).message).toBe("parameters.count: must be at most 10");
    expect((error as ApiError).fieldProblems).toHaveLength(1);
  });

  it("say what answered when there is no message", () => {
    expect(describeDetail(502, null)).toBe("The server answered 502.");
  });
});
