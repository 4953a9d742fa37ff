DROP TABLE staff_sign_in_links;
