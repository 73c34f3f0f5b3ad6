import { useState } from "react";

/** Copies `text` to the clipboard and says so. */
export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    await navigator.clipboard.writeText(text);
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <button type="button" className="small" onClick={() => void copy()} aria-label={`${label}: ${text}`}>
      {copied ? "Copied" : label}
    </button>
  );
}

/** Offers `content` as a file download. */
export function DownloadButton({
  content,
  filename,
  type,
  label,
}: {
  content: () => string;
  filename: string;
  type: string;
  label: string;
}) {
  const download = () => {
    const url = URL.createObjectURL(new Blob([content()], { type }));
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  };
  return (
    <button type="button" className="small" onClick={download}>
      {label}
    </button>
  );
}
