import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, Fragment, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { ApiError, api, onUnauthorized, setActingOrg, setCsrfToken } from "./api";
import type { Org, Session, User } from "./types";

const ORG_STORAGE_KEY = "bifrost.org";
/** The queries that say who is signed in; every other query belongs to the organization acted for. */
const SIGNED_IN_KEYS = new Set(["session", "me", "orgs"]);

export interface SignedIn {
  session: Session;
  me: User;
  orgs: Org[];
  /** The organization the user acts for; null for a user of none. */
  org: Org | null;
  /** Whether the user administers the organization acted for (platform admins administer every one). */
  isAdmin: boolean;
  chooseOrg: (orgId: string) => void;
  signOut: () => Promise<void>;
}

const SignedInContext = createContext<SignedIn | null>(null);

export function useSignedIn(): SignedIn {
  const signedIn = useContext(SignedInContext);
  if (!signedIn) throw new Error("useSignedIn outside a signed-in page");
  return signedIn;
}

async function currentSession(): Promise<Session | null> {
  try {
    return await api<Session>("/api/session", { withOrg: false, signsOutOn401: false });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/** The session query: null when nobody is signed in. */
export function useSessionQuery() {
  const client = useQueryClient();
  useEffect(() => onUnauthorized(() => client.setQueryData(["session"], null)), [client]);
  return useQuery({ queryKey: ["session"], queryFn: currentSession, staleTime: Infinity });
}

export function signedInAs(session: Session, client: ReturnType<typeof useQueryClient>): void {
  setCsrfToken(session.csrf_token);
  client.setQueryData(["session"], session);
}

function storedOrg(): string | null {
  try {
    return localStorage.getItem(ORG_STORAGE_KEY);
  } catch {
    return null;
  }
}

/** Loads who is signed in and their organizations, then renders `children` for the organization acted for. */
export function SignedInProvider({
  session,
  children,
  loading,
}: {
  session: Session;
  children: ReactNode;
  loading: ReactNode;
}) {
  const client = useQueryClient();
  setCsrfToken(session.csrf_token);
  const me = useQuery({
    queryKey: ["me"],
    queryFn: () => api<User>("/api/users/me", { withOrg: false }),
    staleTime: 60_000,
  });
  const orgs = useQuery({
    queryKey: ["orgs"],
    queryFn: () => api<Org[]>("/api/orgs", { withOrg: false }),
    staleTime: 60_000,
  });
  const [chosen, setChosen] = useState<string | null>(storedOrg);

  const orgList = orgs.data;
  const org = useMemo(() => {
    if (!orgList) return null;
    return orgList.find((o) => o.id === chosen) ?? orgList.find((o) => o.id === session.org_id) ?? orgList[0] ?? null;
  }, [orgList, chosen, session.org_id]);
  setActingOrg(org?.id ?? null);

  const chooseOrg = useCallback(
    (orgId: string) => {
      try {
        localStorage.setItem(ORG_STORAGE_KEY, orgId);
      } catch {
        // Private browsing: the choice lasts for this page only.
      }
      setActingOrg(orgId);
      client.removeQueries({ predicate: (query) => !SIGNED_IN_KEYS.has(String(query.queryKey[0])) });
      setChosen(orgId);
    },
    [client],
  );

  const signOut = useCallback(async () => {
    await api<void>("/api/session", { method: "DELETE", withOrg: false });
    setCsrfToken(null);
    client.setQueryData(["session"], null);
    client.removeQueries({ predicate: (query) => query.queryKey[0] !== "session" });
  }, [client]);

  const value = useMemo<SignedIn | null>(() => {
    if (!me.data || !orgList) return null;
    const isAdmin = me.data.is_platform_admin || (org !== null && me.data.roles[org.id] === "org_admin");
    return { session, me: me.data, orgs: orgList, org, isAdmin, chooseOrg, signOut };
  }, [session, me.data, orgList, org, chooseOrg, signOut]);

  // A 401 has already shown the sign-in page; anything else is for the error boundary.
  const failure = me.error ?? orgs.error;
  if (failure && !(failure instanceof ApiError && failure.status === 401)) throw failure;
  if (!value) return <>{loading}</>;
  return (
    <SignedInContext.Provider value={value}>
      {/* Keyed by the organization: its pages start afresh when the user switches to another. */}
      <Fragment key={org?.id ?? "none"}>{children}</Fragment>
    </SignedInContext.Provider>
  );
}
