import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../api";
import { CopyButton } from "../components/CopyButton";
import { ItemList, RemoveButton } from "../components/ItemList";
import { Page, Problem } from "../components/Page";
import { formatDateTime } from "../format";
import { useSignedIn } from "../session";
import type { ApiKey, ApiKeyCreated, Role } from "../types";

/** Your API keys, and for admins the service keys of the organization: made here, shown once, revocable. */
export default function ApiKeys() {
  const { me, org, isAdmin } = useSignedIn();
  const client = useQueryClient();
  const keys = useQuery({ queryKey: ["keys"], queryFn: () => api<ApiKey[]>("/api/keys") });
  const [name, setName] = useState("");
  const [expires, setExpires] = useState("");
  const [bound, setBound] = useState(true);
  const [service, setService] = useState(false);
  const [role, setRole] = useState<Role>("member");
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const create = useMutation({
    mutationFn: () => {
      const expires_at = expires ? new Date(`${expires}T23:59:59`).toISOString() : null;
      if (service) return api<ApiKeyCreated>("/api/keys/service", { method: "POST", body: { name, role, expires_at } });
      return api<ApiKeyCreated>("/api/keys", {
        method: "POST",
        body: { name, expires_at, org_id: bound && org ? org.id : null },
      });
    },
    onSuccess: (key) => {
      setCreated(key);
      setName("");
      void client.invalidateQueries({ queryKey: ["keys"] });
    },
  });
  const revoke = useMutation({
    mutationFn: (key: ApiKey) => api<void>(`/api/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["keys"] }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setCreated(null);
    create.mutate();
  };

  return (
    <Page title="API keys">
      <p className="muted">
        Send a key as <code>Authorization: Bearer &lt;key&gt;</code>. It is shown once, when it is made.
      </p>
      {created ? (
        <div className="notice key-once" role="status">
          <p>
            <strong>Key {created.name} made. Copy it now: it is not shown again.</strong>
          </p>
          <p className="key-value">
            <code>{created.key}</code> <CopyButton text={created.key} label="Copy key" />
          </p>
        </div>
      ) : null}
      <form className="card inline-form" onSubmit={submit} aria-label="Make a key">
        <h2>Make a key</h2>
        <Problem error={create.error} title="No key made." />
        <label>
          Name
          <input required maxLength={200} value={name} onChange={(event) => setName(event.target.value)} />
        </label>
        <label>
          Expires at the end of
          <input type="date" value={expires} onChange={(event) => setExpires(event.target.value)} />
        </label>
        {isAdmin && org ? (
          <label className="checkbox">
            <input type="checkbox" checked={service} onChange={(event) => setService(event.target.checked)} />
            Service key of {org.name} (outlives you)
          </label>
        ) : null}
        {service ? (
          <label>
            Role
            <select value={role} onChange={(event) => setRole(event.target.value as Role)}>
              <option value="member">Member</option>
              <option value="org_admin">Admin</option>
            </select>
          </label>
        ) : org ? (
          <label className="checkbox">
            <input type="checkbox" checked={bound} onChange={(event) => setBound(event.target.checked)} />
            Only for {org.name}
          </label>
        ) : null}
        <button type="submit" className="primary" disabled={create.isPending}>
          Make key
        </button>
      </form>
      <ItemList
        items={keys}
        errors={[keys.error, revoke.error]}
        what="keys"
        empty="No keys yet."
        caption="API keys"
        columns={[
          { label: "Name", cell: (key) => key.name },
          { label: "Starts with", cell: (key) => <code>{key.prefix}…</code> },
          { label: "Holder", cell: (key) => (key.user_id === me.id ? "you" : "service account") },
          { label: "Expires", cell: (key) => (key.expires_at ? formatDateTime(key.expires_at) : "never") },
          { label: "Last used", cell: (key) => (key.last_used_at ? formatDateTime(key.last_used_at) : "never") },
        ]}
        rowKey={(key) => key.id}
        rowAttributes={(key) => ({ className: key.revoked_at ? "revoked" : undefined })}
        actions={(key) =>
          key.revoked_at ? (
            <span className="muted">revoked {formatDateTime(key.revoked_at)}</span>
          ) : (
            <RemoveButton
              label="Revoke"
              name={key.name}
              question={`Revoke the key ${key.name}? Whatever uses it stops working.`}
              onConfirmed={() => revoke.mutate(key)}
            />
          )
        }
      />
    </Page>
  );
}
