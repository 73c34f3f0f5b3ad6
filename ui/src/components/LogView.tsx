import { useVirtualizer } from "@tanstack/react-virtual";
import { type KeyboardEvent, useCallback, useLayoutEffect, useRef, useSyncExternalStore } from "react";
import { formatClock } from "../format";
import type { LogStore } from "../logs";

export const ROW_HEIGHT = 20;
// A short log takes only the room it needs (and room for a horizontal scroll bar); a long one scrolls.
const MIN_ROWS = 5;
const FRAME = 18;
// How close to the end (in pixels) still counts as being at the end.
const AT_END = ROW_HEIGHT;

/** The log: only the rows in view are in the page, whatever the length. While `following`, it keeps the
 * newest line in view; scrolling up (or Home) stops that, scrolling back to the end (or End) resumes it. */
export function LogView({
  store,
  following,
  onFollowingChange,
  empty,
}: {
  store: LogStore;
  following: boolean;
  onFollowingChange: (following: boolean) => void;
  /** What to say while there is no line. */
  empty: string;
}) {
  const version = useSyncExternalStore(store.subscribe, store.getVersion);
  const scroller = useRef<HTMLDivElement>(null);
  const count = store.rows.length;
  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 30,
  });

  useLayoutEffect(() => {
    // `version` changes with every batch of lines: follow them.
    if (following && count > 0 && version >= 0) virtualizer.scrollToIndex(count - 1, { align: "end" });
  }, [following, count, version, virtualizer]);

  const onScroll = useCallback(() => {
    const element = scroller.current;
    if (!element) return;
    const atEnd = element.scrollHeight - element.scrollTop - element.clientHeight <= AT_END;
    if (atEnd !== following) onFollowingChange(atEnd);
  }, [following, onFollowingChange]);

  // Home and End go to the first and the last line (End follows it again) at any length.
  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (event.key === "End") {
      event.preventDefault();
      onFollowingChange(true);
    } else if (event.key === "Home") {
      event.preventDefault();
      onFollowingChange(false);
      virtualizer.scrollToIndex(0);
    }
  };

  return (
    <div
      className="log"
      onKeyDown={onKeyDown}
      ref={scroller}
      style={{ height: Math.max(virtualizer.getTotalSize(), MIN_ROWS * ROW_HEIGHT) + FRAME }}
      onScroll={onScroll}
      tabIndex={0}
      role="region"
      aria-label="Log"
      data-lines={store.lineCount}
    >
      {count === 0 ? <p className="muted log-empty">{empty}</p> : null}
      <div className="log-rows" style={{ height: virtualizer.getTotalSize() }}>
        {virtualizer.getVirtualItems().map((item) => {
          const row = store.rows[item.index];
          if (!row) return null;
          return (
            <div
              key={item.key}
              className={`log-row level-${row.entry.level}`}
              style={{ transform: `translateY(${item.start}px)` }}
              data-line={row.part === 0 ? row.entry.line : undefined}
            >
              <span className="log-number">{row.part === 0 ? row.entry.line : ""}</span>
              <span className="log-time">{row.part === 0 ? formatClock(row.entry.ts) : ""}</span>
              <span className="log-level">{row.part === 0 ? row.entry.level : ""}</span>
              <span className="log-text">{row.text}</span>
            </div>
          );
        })}
      </div>
    </div>
  );
}

/** How many lines the log holds, as they arrive. */
export function LogLineCount({ store }: { store: LogStore }) {
  useSyncExternalStore(store.subscribe, store.getVersion);
  return <>{store.lineCount === 1 ? "1 line" : `${store.lineCount} lines`}</>;
}
