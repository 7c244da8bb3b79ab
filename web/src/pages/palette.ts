/** Series colours, readable on the light and the dark background. */
export const PALETTE = ['#2f7ed8', '#e4572e', '#17a673', '#9b59b6', '#f0a30a', '#76818e'];
