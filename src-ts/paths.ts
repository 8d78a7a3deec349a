/** Paths as users write them in environment variables and options. */

import os from 'node:os'
import path from 'node:path'

/** `~` and `~/...` expanded to the home directory; anything else unchanged. */
export function expandHome(p: string): string {
  return p === '~' ? os.homedir() : p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p
}
