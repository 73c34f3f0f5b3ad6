import { type FormEvent, useState } from "react";
import { RemoveButton } from "../../components/ItemList";
import { Problem } from "../../components/Page";
import { formatDateTime } from "../../format";
import type { ConfigEntry } from "../../types";
import { AdminOnly, ScopeLabel } from "./AdminOnly";
import { EditableList, GlobalField, NameField, useScopedEntries } from "./EditableList";

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
  const { entries, save, remove, mayChange } = useScopedEntries<ConfigEntry>("config");
  const [name, setName] = useState("");
  const [text, setText] = useState("");
  const [kind, setKind] = useState<"text" | "json">("text");
  const [global, setGlobal] = useState(false);
  const [invalid, setInvalid] = useState<string | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const parsed = parseConfigValue(text, kind);
    if ("error" in parsed) {
      setInvalid(parsed.error);
      return;
    }
    setInvalid(null);
    save.mutate(
      { name, value: parsed.value, global },
      {
        onSuccess: () => {
          setName("");
          setText("");
        },
      },
    );
  };

  return (
    <EditableList
      title="Config"
      intro={
        <p className="muted">
          Plain settings workflows read with <code>await config.get(name)</code>; every member of the organization
          may read them. Keep credentials in secrets.
        </p>
      }
      form={
        <form className="card inline-form" onSubmit={submit} aria-label="Set a config entry">
          <h2>Set an entry</h2>
          <Problem error={save.error} title="Not saved." />
          <NameField value={name} onChange={setName} />
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
          <GlobalField checked={global} onChange={setGlobal} />
          <button type="submit" className="primary" disabled={save.isPending}>
            Save entry
          </button>
        </form>
      }
      items={entries}
      errors={[entries.error, remove.error]}
      what="config"
      empty="No config entries yet."
      caption="Config entries"
      columns={[
        { label: "Name", cell: (entry) => <code>{entry.name}</code> },
        { label: "Value", cell: (entry) => <code className="value">{JSON.stringify(entry.value)}</code> },
        { label: "Scope", cell: (entry) => <ScopeLabel orgId={entry.org_id} /> },
        { label: "Updated", cell: (entry) => formatDateTime(entry.updated_at) },
      ]}
      rowKey={(entry) => `${entry.org_id}/${entry.name}`}
      actions={(entry) =>
        mayChange(entry) ? (
          <RemoveButton
            label="Delete"
            name={entry.name}
            question={`Delete the config entry ${entry.name}?`}
            onConfirmed={() => remove.mutate(entry)}
          />
        ) : null
      }
    />
  );
}

export default function Config() {
  return (
    <AdminOnly title="Config">
      <ConfigPage />
    </AdminOnly>
  );
}
