import { type ReactNode, useEffect, useRef } from "react";

// The first page shown leaves the focus where the browser puts it; every page after it was navigated to.
let navigated = false;

/** A page: its heading (focused when the page was navigated to, so keyboard and screen-reader users start
 * there), the buttons that act on it, and its content. */
export function Page({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (navigated) heading.current?.focus();
    navigated = true;
  }, []);
  useEffect(() => {
    document.title = `${title} · Bifrost`;
  }, [title]);
  return (
    <>
      <div className="page-head">
        <h1 ref={heading} tabIndex={-1}>
          {title}
        </h1>
        {actions ? <div className="actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}

/** What went wrong, in a sentence, announced to screen readers. */
export function Problem({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="problem" role="alert">
      {title ? <strong>{title} </strong> : null}
      {message}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}
