// The subscribe form's hidden time_zone field: the browser's IANA zone (Intl), so the
// reader's morning can be theirs. Without script the field stays empty and the list's
// default zone applies; nothing else on the page needs script.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("time_zone");
  if (!field || field.value) return;
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    field.value = "";
  }
});
