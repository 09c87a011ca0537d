// Shows every <time> of the status page in the viewer's own zone; the UTC
// text stays as the hover title. Without this script the page shows UTC.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) { el.textContent = at.toLocaleString(); }
  });
});
