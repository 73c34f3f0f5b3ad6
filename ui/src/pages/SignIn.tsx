import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useState } from "react";
import { ApiError, api } from "../api";
import { ThemeToggle } from "../components/Layout";
import { signedInAs } from "../session";
import type { Session } from "../types";

/** Password sign-in; the session becomes an HttpOnly cookie, and the page the user asked for then loads. */
export function SignIn() {
  const client = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    document.title = "Sign in · Bifrost";
  }, []);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await api<Session>("/api/session", {
        method: "POST",
        body: { email, password },
        headers: { "X-Requested-With": "bifrost-ui" },
        withOrg: false,
        signsOutOn401: false,
      });
      signedInAs(session, client);
    } catch (failure) {
      setError(failure instanceof ApiError || failure instanceof Error ? failure.message : String(failure));
      setBusy(false);
    }
  };

  return (
    <main id="main" className="sign-in">
      <form onSubmit={(event) => void submit(event)} className="card" aria-labelledby="sign-in-title">
        <h1 id="sign-in-title">
          <img src="/favicon.svg" alt="" width="32" height="32" /> Sign in to Bifrost
        </h1>
        {error ? (
          <p className="problem" role="alert">
            {error}
          </p>
        ) : null}
        <label>
          Email
          <input
            type="email"
            name="email"
            autoComplete="username"
            required
            value={email}
            onChange={(event) => setEmail(event.target.value)}
          />
        </label>
        <label>
          Password
          <input
            type="password"
            name="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </label>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p className="muted small-print">
          No password yet? An admin sets one with <code>PATCH /api/users/&#123;id&#125;</code>.
        </p>
      </form>
      <div className="sign-in-theme">
        <ThemeToggle />
      </div>
    </main>
  );
}
