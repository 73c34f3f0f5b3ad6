import { useQuery } from "@tanstack/react-query";
import { api } from "./api";
import { useSignedIn } from "./session";
import type { Member } from "./types";

/** The members of the organization acted for; only its admins may list them (nothing for anyone else). */
export function useMembers() {
  const { org, isAdmin } = useSignedIn();
  return useQuery({
    queryKey: ["members", org?.id],
    queryFn: () => api<Member[]>(`/api/orgs/${encodeURIComponent(org?.id ?? "")}/members`),
    enabled: isAdmin && org !== null,
    staleTime: 60_000,
  });
}

/** Who started a run, as far as the caller can tell: members' emails for admins, "you" for one's own. */
export function useUserNames(): (userId: string) => string {
  const { me } = useSignedIn();
  const members = useMembers();
  return (userId) => {
    if (userId === me.id) return "you";
    return members.data?.find((member) => member.user_id === userId)?.email ?? userId.slice(0, 8);
  };
}
