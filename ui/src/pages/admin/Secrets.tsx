import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useId, useState } from "react";
import { api } from "../../api";
import { Loading, Page, Problem } from "../../components/Page";
import { formatDateTime } from "../../format";
import { useSignedIn } from "../../session";
import type { Secret } from "../../types";
import { AdminOnly, ScopeLabel } from "./AdminOnly";

const NAME_PATTERN = "[A-Za-z0-9_.\\-]+";

/** Secrets by name: values go in and are never shown again, not even to admins. */
function SecretsPage() {
  const { me } = useSignedIn();
  const client = useQueryClient();
  const secrets = useQuery({ queryKey: ["secrets"], queryFn: () => api<Secret[]>("/api/secrets") });
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [global, setGlobal] = useState(false);
  const [saved, setSaved] = useState<string | null>(null);
  const valueId = useId();
  const save = useMutation({
    mutationFn: () =>
      api<Secret>(`/api/secrets/${encodeURIComponent(name)}`, {
        method: "PUT",
        body: { value },
        query: { global: global || undefined },
      }),
    onSuccess: (secret) => {
      setSaved(secret.name);
      setName("");
      setValue("");
      void client.invalidateQueries({ queryKey: ["secrets"] });
    },
  });
  const remove = useMutation({
    mutationFn: (secret: Secret) =>
      api<void>(`/api/secrets/${encodeURIComponent(secret.name)}`, {
        method: "DELETE",
        query: { global: secret.org_id === null || undefined },
      }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["secrets"] }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSaved(null);
    save.mutate();
  };
  const mayChange = (secret: Secret) => secret.org_id !== null || me.is_platform_admin;

  return (
    <Page title="Secrets">
      <p className="muted">
        Workflows read them with <code>await secrets.get(name)</code>. Values are encrypted at rest and never shown
        again after saving; a value a workflow read is masked in its logs and results.
      </p>
      <form className="card inline-form" onSubmit={submit} aria-label="Set a secret">
        <h2>Set a secret</h2>
        <Problem error={save.error} title="Not saved." />
        {saved ? (
          <p className="notice" role="status">
            Secret {saved} saved.
          </p>
        ) : null}
        <label>
          Name
          <input
            required
            pattern={NAME_PATTERN}
            title="Letters, digits, _ . and -"
            value={name}
            onChange={(event) => setName(event.target.value)}
          />
        </label>
        <label>
          Value
          <input
            id={valueId}
            type="password"
            autoComplete="off"
            required
            value={value}
            onChange={(event) => setValue(event.target.value)}
          />
        </label>
        {me.is_platform_admin ? (
          <label className="checkbox">
            <input type="checkbox" checked={global} onChange={(event) => setGlobal(event.target.checked)} />
            Global (the fallback of every organization)
          </label>
        ) : null}
        <button type="submit" className="primary" disabled={save.isPending}>
          Save secret
        </button>
      </form>
      <Problem error={secrets.error ?? remove.error} />
      {secrets.isPending ? <Loading what="secrets" /> : null}
      {secrets.data?.length === 0 ? <p className="muted">No secrets yet.</p> : null}
      {secrets.data?.length ? (
        <table className="responsive">
          <caption className="visually-hidden">Secrets</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scope</th>
              <th scope="col">Updated</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {secrets.data.map((secret) => (
              <tr key={`${secret.org_id}/${secret.name}`}>
                <td data-label="Name">
                  <code>{secret.name}</code>
                </td>
                <td data-label="Scope">
                  <ScopeLabel orgId={secret.org_id} />
                </td>
                <td data-label="Updated">{formatDateTime(secret.updated_at)}</td>
                <td className="row-actions">
                  {mayChange(secret) ? (
                    <>
                      <button
                        type="button"
                        className="small"
                        onClick={() => {
                          setName(secret.name);
                          setGlobal(secret.org_id === null);
                          document.getElementById(valueId)?.focus();
                        }}
                      >
                        Replace value<span className="visually-hidden"> of {secret.name}</span>
                      </button>
                      <button
                        type="button"
                        className="small danger"
                        onClick={() => {
                          if (window.confirm(`Delete the secret ${secret.name}?`)) remove.mutate(secret);
                        }}
                      >
                        Delete<span className="visually-hidden"> {secret.name}</span>
                      </button>
                    </>
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

export default function Secrets() {
  return (
    <AdminOnly title="Secrets">
      <SecretsPage />
    </AdminOnly>
  );
}
