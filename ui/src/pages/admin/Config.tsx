import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../../api";
import { Loading, Page, Problem } from "../../components/Page";
import { formatDateTime } from "../../format";
import { useSignedIn } from "../../session";
import type { ConfigEntry } from "../../types";
import { AdminOnly, ScopeLabel } from "./AdminOnly";

/** The value an admin typed: text as it is, or JSON; an error message for JSON that does not parse. */
export function parseConfigValue(text: string, kind: "text" | "json"): { value: unknown } | { error: string } {
  if (kind === "text") return { value: text };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `Not JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
}

function ConfigPage() {
  const { me } = useSignedIn();
  const client = useQueryClient();
  const entries = useQuery({ queryKey: ["config"], queryFn: () => api<ConfigEntry[]>("/api/config") });
  const [name, setName] = useState("");
  const [text, setText] = useState("");
  const [kind, setKind] = useState<"text" | "json">("text");
  const [global, setGlobal] = useState(false);
  const [invalid, setInvalid] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (value: unknown) =>
      api<ConfigEntry>(`/api/config/${encodeURIComponent(name)}`, {
        method: "PUT",
        body: { value },
        query: { global: global || undefined },
      }),
    onSuccess: () => {
      setName("");
      setText("");
      void client.invalidateQueries({ queryKey: ["config"] });
    },
  });
  const remove = useMutation({
    mutationFn: (entry: ConfigEntry) =>
      api<void>(`/api/config/${encodeURIComponent(entry.name)}`, {
        method: "DELETE",
        query: { global: entry.org_id === null || undefined },
      }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["config"] }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const parsed = parseConfigValue(text, kind);
    if ("error" in parsed) {
      setInvalid(parsed.error);
      return;
    }
    setInvalid(null);
    save.mutate(parsed.value);
  };

  return (
    <Page title="Config">
      <p className="muted">
        Plain settings workflows read with <code>await config.get(name)</code>; every member of the organization
        may read them. Keep credentials in secrets.
      </p>
      <form className="card inline-form" onSubmit={submit} aria-label="Set a config entry">
        <h2>Set an entry</h2>
        <Problem error={save.error} title="Not saved." />
        <label>
          Name
          <input
            required
            pattern="[A-Za-z0-9_.\-]+"
            title="Letters, digits, _ . and -"
            value={name}
            onChange={(event) => setName(event.target.value)}
          />
        </label>
        <label>
          Kind
          <select value={kind} onChange={(event) => setKind(event.target.value as "text" | "json")}>
            <option value="text">Text</option>
            <option value="json">JSON (number, list, object…)</option>
          </select>
        </label>
        <label className="grow">
          Value
          <textarea
            rows={2}
            value={text}
            onChange={(event) => setText(event.target.value)}
            aria-invalid={invalid ? true : undefined}
            aria-describedby={invalid ? "config-value-error" : undefined}
          />
        </label>
        {invalid ? (
          <p className="field-error" id="config-value-error" role="alert">
            {invalid}
          </p>
        ) : null}
        {me.is_platform_admin ? (
          <label className="checkbox">
            <input type="checkbox" checked={global} onChange={(event) => setGlobal(event.target.checked)} />
            Global (the fallback of every organization)
          </label>
        ) : null}
        <button type="submit" className="primary" disabled={save.isPending}>
          Save entry
        </button>
      </form>
      <Problem error={entries.error ?? remove.error} />
      {entries.isPending ? <Loading what="config" /> : null}
      {entries.data?.length === 0 ? <p className="muted">No config entries yet.</p> : null}
      {entries.data?.length ? (
        <table className="responsive">
          <caption className="visually-hidden">Config entries</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
              <th scope="col">Scope</th>
              <th scope="col">Updated</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {entries.data.map((entry) => (
              <tr key={`${entry.org_id}/${entry.name}`}>
                <td data-label="Name">
                  <code>{entry.name}</code>
                </td>
                <td data-label="Value">
                  <code className="value">{JSON.stringify(entry.value)}</code>
                </td>
                <td data-label="Scope">
                  <ScopeLabel orgId={entry.org_id} />
                </td>
                <td data-label="Updated">{formatDateTime(entry.updated_at)}</td>
                <td className="row-actions">
                  {entry.org_id !== null || me.is_platform_admin ? (
                    <button
                      type="button"
                      className="small danger"
                      onClick={() => {
                        if (window.confirm(`Delete the config entry ${entry.name}?`)) remove.mutate(entry);
                      }}
                    >
                      Delete<span className="visually-hidden"> {entry.name}</span>
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Page>
  );
}

export default function Config() {
  return (
    <AdminOnly title="Config">
      <ConfigPage />
    </AdminOnly>
  );
}
