import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../../api";
import { RemoveButton } from "../../components/ItemList";
import { Problem } from "../../components/Page";
import { useMembers } from "../../members";
import { useSignedIn } from "../../session";
import type { Member, Role, User } from "../../types";
import { AdminOnly } from "./AdminOnly";
import { EditableList } from "./EditableList";

const ROLE_LABELS: Record<Role, string> = { org_admin: "Admin", member: "Member" };

function RoleSelect({ value, onChange, label }: { value: Role; onChange: (role: Role) => void; label: string }) {
  return (
    <select value={value} onChange={(event) => onChange(event.target.value as Role)} aria-label={label}>
      {Object.entries(ROLE_LABELS).map(([role, text]) => (
        <option key={role} value={role}>
          {text}
        </option>
      ))}
    </select>
  );
}

function MembersPage() {
  const { org, me } = useSignedIn();
  const client = useQueryClient();
  const members = useMembers();
  const orgPath = `/api/orgs/${encodeURIComponent(org?.id ?? "")}/members`;
  const refresh = () => client.invalidateQueries({ queryKey: ["members"] });
  const setRole = useMutation({
    mutationFn: ({ member, role }: { member: Member; role: Role }) =>
      api<Member>(`${orgPath}/${encodeURIComponent(member.user_id)}`, { method: "PUT", body: { role } }),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: (member: Member) => api<void>(`${orgPath}/${encodeURIComponent(member.user_id)}`, { method: "DELETE" }),
    onSuccess: refresh,
  });
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setNewRole] = useState<Role>("member");
  const create = useMutation({
    mutationFn: () =>
      api<User>("/api/users", {
        method: "POST",
        body: { email, name: name || null, password: password || null, role },
      }),
    onSuccess: () => {
      setEmail("");
      setName("");
      setPassword("");
      void refresh();
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate();
  };

  return (
    <EditableList
      title={`Members of ${org?.name ?? "the organization"}`}
      form={
        <form className="card inline-form" onSubmit={submit} aria-label="Add a member">
          <h2>Add a member</h2>
          <Problem error={create.error} title="Not added." />
          {create.isSuccess ? (
            <p className="notice" role="status">
              {create.data.email} added.
            </p>
          ) : null}
          <label>
            Email
            <input type="email" required value={email} onChange={(event) => setEmail(event.target.value)} />
          </label>
          <label>
            Name
            <input value={name} onChange={(event) => setName(event.target.value)} />
          </label>
          <label>
            Password
            <input
              type="password"
              autoComplete="new-password"
              minLength={12}
              value={password}
              onChange={(event) => setPassword(event.target.value)}
            />
          </label>
          <label>
            Role
            <RoleSelect value={role} onChange={setNewRole} label="Role" />
          </label>
          <button type="submit" className="primary" disabled={create.isPending}>
            Add member
          </button>
        </form>
      }
      items={members}
      errors={[members.error, setRole.error, remove.error]}
      what="members"
      caption="Members and their roles"
      columns={[
        { label: "Email", cell: (member) => member.email },
        { label: "Name", cell: (member) => member.name ?? "" },
        {
          label: "Role",
          cell: (member) => (
            <RoleSelect
              value={member.role}
              label={`Role of ${member.email}`}
              onChange={(next) => setRole.mutate({ member, role: next })}
            />
          ),
        },
      ]}
      rowKey={(member) => member.user_id}
      actions={(member) =>
        member.user_id !== me.id ? (
          <RemoveButton
            label="Remove"
            name={member.email}
            question={`Remove ${member.email} from ${org?.name}?`}
            onConfirmed={() => remove.mutate(member)}
          />
        ) : null
      }
    />
  );
}

export default function Members() {
  return (
    <AdminOnly title="Members">
      <MembersPage />
    </AdminOnly>
  );
}
