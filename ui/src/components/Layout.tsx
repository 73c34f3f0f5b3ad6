import { useQuery } from "@tanstack/react-query";
import { type ReactNode, useEffect, useState } from "react";
import { Link, useLocation } from "wouter";
import { api } from "../api";
import { useSignedIn } from "../session";
import { applyTheme, nextTheme, storedTheme, type ThemeChoice } from "../theme";
import type { WorkspaceProblem } from "../types";

const THEME_LABELS: Record<ThemeChoice, string> = { system: "Theme: system", light: "Theme: light", dark: "Theme: dark" };

function NavLink({ href, children }: { href: string; children: ReactNode }) {
  const [location] = useLocation();
  const current = location === href || location.startsWith(`${href}/`);
  return (
    <Link href={href} aria-current={current ? "page" : undefined}>
      {children}
    </Link>
  );
}

export function ThemeToggle() {
  const [theme, setTheme] = useState<ThemeChoice>(storedTheme);
  const change = () => {
    const next = nextTheme(theme);
    applyTheme(next);
    setTheme(next);
  };
  return (
    <button type="button" className="ghost" onClick={change} title="Switch between system, light and dark">
      {THEME_LABELS[theme]}
    </button>
  );
}

function OrgPicker() {
  const { orgs, org, chooseOrg } = useSignedIn();
  // With one organization there is nothing to choose, nor to tell.
  if (orgs.length < 2 || !org) return null;
  return (
    <label className="org-picker">
      <span className="visually-hidden">Organization</span>
      <select value={org.id} onChange={(event) => chooseOrg(event.target.value)}>
        {orgs.map((o) => (
          <option key={o.id} value={o.id}>
            {o.name}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The frame of every signed-in page: navigation, organization, account, theme. */
export function Layout({ children }: { children: ReactNode }) {
  const { me, isAdmin, signOut } = useSignedIn();
  const [location] = useLocation();
  const [menuOpen, setMenuOpen] = useState(false);
  const problems = useQuery({
    queryKey: ["workspace-errors"],
    queryFn: () => api<WorkspaceProblem[]>("/api/workspace/errors"),
    refetchInterval: 30_000,
  });

  // A link followed from the menu closes it.
  useEffect(() => setMenuOpen(false), [location]);

  const problemCount = problems.data?.length ?? 0;
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/workflows" className="brand">
          <img src="/favicon.svg" alt="" width="24" height="24" />
          Bifrost
        </Link>
        <button
          type="button"
          className="ghost menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <nav id="main-nav" aria-label="Main" className={menuOpen ? "open" : undefined}>
          <ul>
            <li>
              <NavLink href="/workflows">Workflows</NavLink>
            </li>
            <li>
              <NavLink href="/forms">Forms</NavLink>
            </li>
            <li>
              <NavLink href="/executions">Executions</NavLink>
            </li>
            {isAdmin ? (
              <li>
                <NavLink href="/schedules">Schedules</NavLink>
              </li>
            ) : null}
            <li>
              <NavLink href="/workspace/errors">
                Workspace errors
                {problemCount ? (
                  <span className="count" aria-label={`(${problemCount})`}>
                    {problemCount}
                  </span>
                ) : null}
              </NavLink>
            </li>
            <li>
              <NavLink href="/keys">API keys</NavLink>
            </li>
          </ul>
          {isAdmin ? (
            <ul aria-label="Administration">
              <li>
                <NavLink href="/admin/secrets">Secrets</NavLink>
              </li>
              <li>
                <NavLink href="/admin/config">Config</NavLink>
              </li>
              <li>
                <NavLink href="/admin/members">Members</NavLink>
              </li>
              <li>
                <NavLink href="/admin/audit">Audit log</NavLink>
              </li>
            </ul>
          ) : null}
          <div className="account">
            <OrgPicker />
            <span className="muted" title={me.email}>
              {me.name ?? me.email}
            </span>
            <ThemeToggle />
            <button type="button" className="ghost" onClick={() => void signOut()}>
              Sign out
            </button>
          </div>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
