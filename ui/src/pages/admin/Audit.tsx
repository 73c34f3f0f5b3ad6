import { useInfiniteQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api } from "../../api";
import { Loading, Page, Problem } from "../../components/Page";
import { formatDateTime } from "../../format";
import { useSignedIn } from "../../session";
import type { AuditPage } from "../../types";
import { AdminOnly } from "./AdminOnly";

function AuditLog() {
  const { me } = useSignedIn();
  const [draft, setDraft] = useState("");
  const [action, setAction] = useState("");
  const [allOrgs, setAllOrgs] = useState(false);
  const pages = useInfiniteQuery({
    queryKey: ["audit", action, allOrgs],
    queryFn: ({ pageParam, signal }) =>
      api<AuditPage>("/api/audit", {
        query: { action: action.trim(), all_orgs: allOrgs || undefined, before: pageParam, limit: 100 },
        signal,
      }),
    initialPageParam: null as number | null,
    getNextPageParam: (last) => last.next_before,
  });
  const events = pages.data?.pages.flatMap((page) => page.events) ?? [];

  return (
    <Page title="Audit log">
      <form
        className="filters"
        aria-label="Filter the audit log"
        onSubmit={(event) => {
          event.preventDefault();
          setAction(draft);
        }}
      >
        <label>
          Action
          <input
            type="search"
            value={draft}
            placeholder="e.g. login.failed"
            onChange={(event) => setDraft(event.target.value)}
          />
        </label>
        <button type="submit">Filter</button>
        {me.is_platform_admin ? (
          <label className="checkbox">
            <input type="checkbox" checked={allOrgs} onChange={(event) => setAllOrgs(event.target.checked)} />
            Every organization and the global events
          </label>
        ) : null}
      </form>
      <Problem error={pages.error} />
      {pages.isPending ? <Loading what="the audit log" /> : null}
      {pages.data && events.length === 0 ? <p className="muted">No events.</p> : null}
      {events.length ? (
        <table className="responsive audit">
          <caption className="visually-hidden">Audit events, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Who</th>
              <th scope="col">Target</th>
              <th scope="col">From</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {events.map((event) => (
              <tr key={event.id}>
                <td data-label="When">{formatDateTime(event.at)}</td>
                <td data-label="Action">
                  <code>{event.action}</code>
                </td>
                <td data-label="Who">{event.actor_email ?? "—"}</td>
                <td data-label="Target">{event.target ?? ""}</td>
                <td data-label="From">{event.ip ?? ""}</td>
                <td data-label="Details">
                  {Object.keys(event.detail).length ? (
                    <code className="value">{JSON.stringify(event.detail)}</code>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {pages.hasNextPage ? (
        <button
          type="button"
          className="load-more"
          onClick={() => void pages.fetchNextPage()}
          disabled={pages.isFetchingNextPage}
        >
          {pages.isFetchingNextPage ? "Loading…" : "Load older events"}
        </button>
      ) : null}
    </Page>
  );
}

export default function Audit() {
  return (
    <AdminOnly title="Audit log">
      <AuditLog />
    </AdminOnly>
  );
}
