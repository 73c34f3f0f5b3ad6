import { type FormEvent, useId, useState } from "react";
import { RemoveButton } from "../../components/ItemList";
import { Problem } from "../../components/Page";
import { formatDateTime } from "../../format";
import type { Secret } from "../../types";
import { AdminOnly, ScopeLabel } from "./AdminOnly";
import { EditableList, GlobalField, NameField, useScopedEntries } from "./EditableList";

/** Secrets by name: values go in and are never shown again, not even to admins. */
function SecretsPage() {
  const { entries, save, remove, mayChange } = useScopedEntries<Secret>("secrets");
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [global, setGlobal] = useState(false);
  const [saved, setSaved] = useState<string | null>(null);
  const valueId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSaved(null);
    save.mutate(
      { name, value, global },
      {
        onSuccess: (secret) => {
          setSaved(secret.name);
          setName("");
          setValue("");
        },
      },
    );
  };

  return (
    <EditableList
      title="Secrets"
      intro={
        <p className="muted">
          Workflows read them with <code>await secrets.get(name)</code>. Values are encrypted at rest and never shown
          again after saving; a value a workflow read is masked in its logs and results.
        </p>
      }
      form={
        <form className="card inline-form" onSubmit={submit} aria-label="Set a secret">
          <h2>Set a secret</h2>
          <Problem error={save.error} title="Not saved." />
          {saved ? (
            <p className="notice" role="status">
              Secret {saved} saved.
            </p>
          ) : null}
          <NameField value={name} onChange={setName} />
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
          <GlobalField checked={global} onChange={setGlobal} />
          <button type="submit" className="primary" disabled={save.isPending}>
            Save secret
          </button>
        </form>
      }
      items={entries}
      errors={[entries.error, remove.error]}
      what="secrets"
      empty="No secrets yet."
      caption="Secrets"
      columns={[
        { label: "Name", cell: (secret) => <code>{secret.name}</code> },
        { label: "Scope", cell: (secret) => <ScopeLabel orgId={secret.org_id} /> },
        { label: "Updated", cell: (secret) => formatDateTime(secret.updated_at) },
      ]}
      rowKey={(secret) => `${secret.org_id}/${secret.name}`}
      actions={(secret) =>
        mayChange(secret) ? (
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
            <RemoveButton
              label="Delete"
              name={secret.name}
              question={`Delete the secret ${secret.name}?`}
              onConfirmed={() => remove.mutate(secret)}
            />
          </>
        ) : null
      }
    />
  );
}

export default function Secrets() {
  return (
    <AdminOnly title="Secrets">
      <SecretsPage />
    </AdminOnly>
  );
}
