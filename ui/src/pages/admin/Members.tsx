import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../../api";
import { Loading, Page, Problem } from "../../components/Page";
import { useMembers } from "../../members";
import { useSignedIn } from "../../session";
import type { Member, Role, User } from "../../types";
import { AdminOnly } from "./AdminOnly";

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
    <Page title={`Members of ${org?.name ?? "the organization"}`}>
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
      <Problem error={members.error ?? setRole.error ?? remove.error} />
      {members.isPending ? <Loading what="members" /> : null}
      {members.data ? (
        <table className="responsive">
          <caption className="visually-hidden">Members and their roles</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {members.data.map((member) => (
              <tr key={member.user_id}>
                <td data-label="Email">{member.email}</td>
                <td data-label="Name">{member.name ?? ""}</td>
                <td data-label="Role">
                  <RoleSelect
                    value={member.role}
                    label={`Role of ${member.email}`}
                    onChange={(next) => setRole.mutate({ member, role: next })}
                  />
                </td>
                <td className="row-actions">
                  {member.user_id !== me.id ? (
                    <button
                      type="button"
                      className="small danger"
                      onClick={() => {
                        if (window.confirm(`Remove ${member.email} from ${org?.name}?`)) remove.mutate(member);
                      }}
                    >
                      Remove<span className="visually-hidden"> {member.email}</span>
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

export default function Members() {
  return (
    <AdminOnly title="Members">
      <MembersPage />
    </AdminOnly>
  );
}
