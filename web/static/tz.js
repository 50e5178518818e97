// keygate sign-in: tell the server the browser's time zone, so that the
// mails about this account (a new sign-in, a security change) give times
// in the person's zone. Without JavaScript the field stays empty and the
// mails say UTC. The server checks the name; it is never trusted as is.
const field = document.getElementById("tz");
if (field) {
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    field.value = "";
  }
}
